//! The exact-wheelhouse path: the wheelhouse was restored under its exact key, so the run that
//! saved it had the same requirements and every wheel should be there. Nothing is built; when
//! a wheel is missing after all, the plan's builder runs instead.

use super::super::error::BootstrapError;
use super::installing::{reused, Installed, Installing};

impl Installing<'_> {
    /// Same requirements as the run that saved this wheelhouse: every wheel should be there.
    /// `None` when one is missing (then build).
    pub async fn from_exact_wheelhouse(&self) -> Result<Option<Installed>, BootstrapError> {
        let run = self.install(&[]).await?;
        Ok(run.failed.is_none().then(|| reused(&run)))
    }
}
