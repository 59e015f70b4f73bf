//! What an upload needs to know about a wheel or an sdist: its core metadata (read with the
//! `python-pkginfo` crate), its kind, and its digests. Everything is checked before any
//! request is made, so a broken file never reaches the index.

use std::io::Read;
use std::path::Path;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use python_pkginfo::{Distribution as PkgInfo, Error as PkgInfoError, Metadata};
use sha2::Sha256;

use hgauto_core::artifact::Artifact;
use hgauto_core::error::{Error, IoContext, Result};

/// A wheel or an sdist, inspected and ready to upload.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// The artifact, as described by the caller.
    pub artifact: Artifact,
    /// `bdist_wheel` or `sdist`, as the upload protocol names them.
    pub filetype: &'static str,
    /// The wheel's Python tag (`py3`, `cp312`), or `source` for an sdist.
    pub pyversion: String,
    /// The project name as PEP 503 normalises it (`my-project`).
    pub project: String,
    /// The core metadata.
    pub metadata: Metadata,
    /// Lowercase hex BLAKE2b-256 of the content (PyPI's `blake2_256_digest`).
    pub blake2_256: String,
}

/// PEP 503's normal form of a project name: lowercase, runs of `-`, `_` and `.` as one `-`.
pub fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(c.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// The form of a version that filenames may carry: lowercase, without a leading `v`, `_`
/// and `-` as one (wheel filenames escape `-` as `_`).
fn normalize_version(v: &str) -> String {
    let v = v.trim().to_lowercase();
    let v = v.strip_prefix('v').unwrap_or(&v);
    v.replace('_', "-")
}

/// Inspects `artifact`: its name must be a wheel or an sdist whose file name agrees with
/// the metadata inside, the metadata must have a Name and a Version, and the content must
/// still hash to the artifact's sha256.
pub fn inspect(artifact: &Artifact) -> Result<Distribution> {
    let what = format!("distribution {}", artifact.name);
    let bad = |reason: String| Error::invalid(what.clone(), reason);
    let name = artifact.name.as_str();
    let (filetype, stem) = if let Some(stem) = name.strip_suffix(".whl") {
        ("bdist_wheel", stem)
    } else if let Some(stem) = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".zip"))
    {
        ("sdist", stem)
    } else {
        return Err(bad(
            "is not a wheel (.whl) or an sdist (.tar.gz, .zip)".into()
        ));
    };

    // The content first: a file changed since it was described is an integrity error,
    // whatever its metadata says now.
    let (sha256, blake2_256) = digests(&artifact.path)?;
    if sha256 != artifact.sha256 {
        return Err(Error::Integrity {
            what: format!(
                "{} (changed since it was described)",
                artifact.path.display()
            ),
            expected: artifact.sha256.clone(),
            actual: sha256,
        });
    }
    let metadata = read_metadata(&artifact.path, name).map_err(bad)?;
    if metadata.name.trim().is_empty() {
        return Err(bad("its metadata has an empty Name".into()));
    }
    if metadata.version.trim().is_empty() {
        return Err(bad("its metadata has an empty Version".into()));
    }
    let project = normalize_project(&metadata.name);
    let version = normalize_version(&metadata.version);

    let pyversion = if filetype == "bdist_wheel" {
        // name-version(-build)?-python-abi-platform
        let parts: Vec<&str> = stem.split('-').collect();
        if !(parts.len() == 5 || parts.len() == 6) {
            return Err(bad(
                "is not a valid wheel file name (name-version[-build]-python-abi-platform.whl)"
                    .into(),
            ));
        }
        if normalize_project(parts[0]) != project || normalize_version(parts[1]) != version {
            return Err(bad(format!(
                "its file name says {} {}, but its METADATA says {} {}",
                parts[0], parts[1], metadata.name, metadata.version
            )));
        }
        parts[parts.len() - 3].to_owned()
    } else {
        let agrees = stem.rsplit_once('-').is_some_and(|(n, v)| {
            normalize_project(n) == project && normalize_version(v) == version
        });
        if !agrees {
            return Err(bad(format!(
                "its file name does not start with {}-{} as its PKG-INFO says",
                metadata.name, metadata.version
            )));
        }
        "source".to_owned()
    };

    Ok(Distribution {
        artifact: artifact.clone(),
        filetype,
        pyversion,
        project,
        metadata,
        blake2_256,
    })
}

/// The metadata inside the file, whatever its own name: `python-pkginfo` picks the parser by
/// extension, so the file is read through a name that carries the published one's.
fn read_metadata(path: &Path, published_name: &str) -> std::result::Result<Metadata, String> {
    let parse = |p: &Path| PkgInfo::new(p).map(|d| d.metadata().clone());
    let result = if path.file_name().and_then(|n| n.to_str()) == Some(published_name) {
        parse(path)
    } else {
        // A symlink named like the published file, in a private temporary directory.
        let dir = tempfile::tempdir().map_err(|e| format!("cannot inspect it: {e}"))?;
        let link = dir.path().join(published_name);
        let target = std::fs::canonicalize(path).map_err(|e| format!("cannot open it: {e}"))?;
        std::os::unix::fs::symlink(target, &link).map_err(|e| format!("cannot inspect it: {e}"))?;
        parse(&link)
    };
    result.map_err(|e| match e {
        PkgInfoError::FieldNotFound(field) => format!("its metadata has no {field} field"),
        PkgInfoError::MetadataNotFound => "has no METADATA or PKG-INFO file".into(),
        PkgInfoError::MultipleMetadataFiles(files) => {
            format!("has several metadata files: {}", files.join(", "))
        }
        PkgInfoError::Zip(e) => format!("is not a readable zip archive: {e}"),
        PkgInfoError::Io(e) => format!("cannot be read: {e}"),
        other => format!("has unreadable metadata: {other}"),
    })
}

/// The sha256 and BLAKE2b-256 of a file (lowercase hex), in one pass.
fn digests(path: &Path) -> Result<(String, String)> {
    let mut f = std::fs::File::open(path).at("open", path, "localhost")?;
    let mut sha = Sha256::new();
    let mut blake = Blake2b::<U32>::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).at("read", path, "localhost")?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        blake.update(&buf[..n]);
    }
    Ok((hex::encode(sha.finalize()), hex::encode(blake.finalize())))
}

impl Distribution {
    /// The upload form's text fields, as twine sends them: the protocol fields, every core
    /// metadata field that has a value (lists repeat their field), and the digests.
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let m = &self.metadata;
        let mut f: Vec<(&'static str, String)> = vec![
            (":action", "file_upload".into()),
            ("protocol_version", "1".into()),
            ("name", m.name.clone()),
            ("version", m.version.clone()),
            ("filetype", self.filetype.into()),
            ("pyversion", self.pyversion.clone()),
            ("metadata_version", m.metadata_version.clone()),
            ("sha256_digest", self.artifact.sha256.clone()),
            ("blake2_256_digest", self.blake2_256.clone()),
        ];
        let optional = [
            ("summary", &m.summary),
            ("description", &m.description),
            ("description_content_type", &m.description_content_type),
            ("keywords", &m.keywords),
            ("home_page", &m.home_page),
            ("download_url", &m.download_url),
            ("author", &m.author),
            ("author_email", &m.author_email),
            ("maintainer", &m.maintainer),
            ("maintainer_email", &m.maintainer_email),
            ("license", &m.license),
            ("license_expression", &m.license_expression),
            ("requires_python", &m.requires_python),
        ];
        for (key, value) in optional {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                f.push((key, v.clone()));
            }
        }
        let lists = [
            ("platform", &m.platforms),
            ("supported_platform", &m.supported_platforms),
            ("classifiers", &m.classifiers),
            ("requires_dist", &m.requires_dist),
            ("provides_dist", &m.provides_dist),
            ("obsoletes_dist", &m.obsoletes_dist),
            ("requires_external", &m.requires_external),
            ("project_urls", &m.project_urls),
            ("provides_extra", &m.provides_extras),
            ("license_file", &m.license_files),
            ("dynamic", &m.dynamic),
        ];
        for (key, values) in lists {
            f.extend(values.iter().map(|v| (key, v.clone())));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_normalise_as_pep_503_says() {
        for (raw, want) in [
            ("Friendly-Bard", "friendly-bard"),
            ("FRIENDLY__bard", "friendly-bard"),
            ("friendly.-._bard", "friendly-bard"),
            ("hgauto", "hgauto"),
        ] {
            assert_eq!(normalize_project(raw), want, "{raw}");
        }
    }

    #[test]
    fn versions_compare_as_file_names_write_them() {
        assert_eq!(normalize_version("1.0_rc1"), normalize_version("1.0-RC1"));
        assert_eq!(normalize_version("v2.1"), "2.1");
        assert_ne!(normalize_version("1.0"), normalize_version("1.1"));
    }
}
