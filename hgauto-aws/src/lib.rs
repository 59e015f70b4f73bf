//! # hgauto-aws
//!
//! The AWS backends of hgauto: the EC2 [`Ec2Provider`] (instances, fingerprinted images,
//! machines reached over SSH or SSM), [`SsmMachine`] (Run Command), [`S3Publisher`] and
//! [`SqsJobSource`].
//!
//! Everything is configured by one [`AwsConfig`] (builder, environment or TOML), which is
//! validated before any call: a region typo, a bad CIDR or missing credentials are typed
//! errors naming the value, and nothing is created. Resource names start with a prefix
//! (`hgauto-` by default) and carry tags, so `purge` and sweeps find what a crashed run left.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod config;
pub mod ec2;
mod error;
mod http;
pub mod s3;
#[cfg(feature = "sfn")]
pub mod sfn;
pub mod sqs;
pub mod ssm;

/// The AWS SDK crates this backend is built on, re-exported: a program or a test that needs
/// a raw client gets the same versions and features, so nothing builds the SDK twice.
pub mod sdk {
    pub use aws_sdk_ec2 as ec2;
    pub use aws_sdk_iam as iam;
    pub use aws_sdk_s3 as s3;
    #[cfg(feature = "sfn")]
    pub use aws_sdk_sfn as sfn;
    pub use aws_sdk_sqs as sqs;
    pub use aws_sdk_ssm as ssm;
}

pub use config::{Access, AwsConfig};
pub use ec2::Ec2Provider;
pub use http::http_client;
pub use s3::S3Publisher;
#[cfg(feature = "sfn")]
pub use sfn::SfnActivitySource;
pub use sqs::SqsJobSource;
pub use ssm::{SsmMachine, SsmOptions};
