"""SSH machines and the SFTP publisher (the ``ssh`` feature of the native module)."""

from ._hgauto import FEATURES

if "ssh" not in FEATURES:  # pragma: no cover - only in wheels built without the feature
    raise ImportError("hgauto was built without the `ssh` feature (maturin --features ssh)")

from ._hgauto import SshMachine, SshPublisher

__all__ = ["SshMachine", "SshPublisher"]
