"""The results folder's secret: what submissions must not be able to predict is drawn from it.

Drawn target classes (a targeted attack that could recompute the draw from a public seed would learn every true
label from ``target_class.csv``) and the opaque file names defenses see both derive from a 32-byte secret,
generated once per results folder and kept in it (``secret.key``, mode 600). The results folder is never mounted
into a sandbox, and the secret never reaches a submission's inputs or environment; the manifest records only its
SHA-256 (:func:`fingerprint`), so a run can be matched to its secret without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from harness.errors import SecretError as SecretError  # re-exported: its old home
from harness.results_folder import SECRET_FILE

__all__ = ["SECRET_FILE", "SecretError", "derive", "derive_seed", "fingerprint", "load", "new", "save"]

_BYTES = 32


def load(path: Path) -> bytes | None:
    """The secret stored in a results folder's secret file (:attr:`harness.results_folder.ResultsFolder.secret`),
    or None when there is none yet.

    Raises:
        SecretError: The file exists but is unreadable or does not hold 64 hex digits.
    """
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="ascii").strip()
        secret = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SecretError(f"{path}: unreadable secret ({exc}); delete it to start the results folder afresh") from None
    if len(secret) != _BYTES:
        raise SecretError(f"{path}: holds {len(secret)} bytes, expected {_BYTES}; delete it to start afresh")
    return secret


def new() -> bytes:
    """A fresh random secret (from the operating system's CSPRNG)."""
    return os.urandom(_BYTES)


def save(path: Path, secret: bytes) -> None:
    """Store ``secret`` as the secret file ``path`` of an existing results folder (mode 600; an existing secret
    file is kept)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
    try:
        os.link(tmp, path)  # never replaces a secret already there
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def fingerprint(secret: bytes) -> str:
    """SHA-256 of the secret (hex): what the manifest records."""
    return hashlib.sha256(secret).hexdigest()


def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HMAC-SHA256 of ``purpose`` under ``secret``)."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def derive_seed(secret: bytes, purpose: str) -> int:
    """A 128-bit integer seed for one purpose, e.g. for ``numpy.random.default_rng``."""
    return int.from_bytes(derive(secret, purpose)[:16], "big")
