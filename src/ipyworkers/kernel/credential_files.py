"""The credentials files a session writes for workers that start elsewhere (by hand, or
by a site's engine): each is listed in the runtime directory's ``cleanup`` file, so the
janitor removes it even after a killed kernel, and removed at stop otherwise."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .. import tls

CREDENTIALS_DIR = "~/.ipyworkers"


class CredentialFiles:
    def __init__(self, folder: str = CREDENTIALS_DIR):
        self.folder = folder
        self._paths: list[str] = []

    def write(self, creds: tls.Credentials, address: str, runtime_dir: Path) -> str:
        folder = os.path.expanduser(self.folder)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        path = os.path.join(folder, f"session-{os.getpid()}-{secrets.token_hex(6)}.cred")
        creds.write(path, address)
        self._paths.append(path)
        with open(runtime_dir / "cleanup", "a") as listed:
            listed.write(path + "\n")
        return path

    def drop(self) -> None:
        for path in self._paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._paths.clear()
