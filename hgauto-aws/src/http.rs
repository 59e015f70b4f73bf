//! The HTTP client under every SDK client of this crate.

use aws_sdk_ec2::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The HTTPS client every SDK client of this crate uses: rustls with ring's crypto.
///
/// The SDK crates are built without their default client, whose TLS is aws-lc (a C library
/// that cmake builds, the slowest part of a clean build). A program that builds SDK clients
/// of its own gives them this one:
///
/// ```no_run
/// let conf = hgauto_aws::sdk::ec2::Config::builder()
///     .behavior_version(hgauto_aws::sdk::ec2::config::BehaviorVersion::latest())
///     .http_client(hgauto_aws::http_client())
///     .build();
/// ```
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
