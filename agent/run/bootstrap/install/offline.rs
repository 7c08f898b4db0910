//! The offline path (`kiln run --offline`): only wheels already on the machine, the run's
//! wheelhouse and the imported ones (see [`crate::wheels::offline`]); a missing one is named,
//! nothing is built but the project.

use crate::wheels;

use super::super::error::BootstrapError;
use super::installing::{reused, Installed, Installing};

impl Installing<'_> {
    /// Only wheels already here; a missing one is named, nothing is built but the project.
    pub async fn offline(&self) -> Result<Installed, BootstrapError> {
        let extra = wheels::offline::install_args(self.wheelhouse);
        let run = self.install(&extra).await?;
        if let Some(o) = &run.failed {
            return Err(match wheels::offline::explain(&o.lines, self.wheelhouse) {
                Some((requirement, searched)) => BootstrapError::OfflineMissing {
                    requirement,
                    searched,
                },
                None => self.failed(o),
            });
        }
        Ok(reused(&run))
    }
}
