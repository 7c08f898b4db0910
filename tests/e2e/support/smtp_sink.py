"""A real SMTP server for Kiln's tests (aiosmtpd): every delivered message becomes a JSON file.

Usage: python3 smtp_sink.py OUT_DIR [USER:PASSWORD]
Prints "PORT <n>" on stdout once it accepts connections, then serves until killed. With
USER:PASSWORD it offers AUTH (without TLS, loopback only) and refuses other credentials.
"""
import json
import logging
import os
import socket
import sys
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        login = None
        if session.auth_data is not None:
            login = session.auth_data
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.out, f".{self.n}.tmp")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(self.out, f"{time.time_ns()}-{self.n:04}.json"))
        return "250 Message accepted for delivery"


def authenticator(expected):
    user, _, password = expected.partition(":")

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if not ok:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)

    return check


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    kwargs = {}
    if len(sys.argv) > 2:
        kwargs = dict(
            authenticator=authenticator(sys.argv[2]), auth_require_tls=False, auth_required=True
        )
    # Plain-text AUTH is what we test, on loopback only.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    port = free_port()
    ctl = Controller(Sink(out), hostname="127.0.0.1", port=port, **kwargs)
    ctl.start()
    print(f"PORT {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
