"""The EC2 provider, SSM machines and the S3 publisher (the ``aws`` feature)."""

from ._hgauto import FEATURES

if "aws" not in FEATURES:  # pragma: no cover - only in wheels built without the feature
    raise ImportError("hgauto was built without the `aws` feature (maturin --features aws)")

from ._hgauto import Ec2Provider, S3Publisher, SqsJobSource, SsmMachine

__all__ = ["Ec2Provider", "S3Publisher", "SqsJobSource", "SsmMachine"]
