//! SSH host keys from an instance's console output, so the first connection can pin the
//! key instead of trusting whatever answers (cloud-init prints them between markers).

use base64::Engine as _;

const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const END: &str = "-----END SSH HOST KEY KEYS-----";

/// Key types in the order we prefer to pin them.
const PREFERENCE: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// The host key blobs in cloud-init's `BEGIN SSH HOST KEY KEYS` block of `console`,
/// preferred type first. Lines whose type field disagrees with the blob are skipped.
pub fn host_keys_from_console(console: &str) -> Vec<Vec<u8>> {
    let Some(start) = console.rfind(BEGIN) else {
        return Vec::new();
    };
    let block = &console[start + BEGIN.len()..];
    let block = &block[..block.find(END).unwrap_or(block.len())];
    let mut keys: Vec<(usize, Vec<u8>)> = block
        .lines()
        .filter_map(|line| {
            // Console lines may carry a timestamp prefix; find the type field.
            let mut words = line.split_whitespace();
            let kind = words.find(|w| PREFERENCE.contains(w))?;
            let blob = base64::engine::general_purpose::STANDARD
                .decode(words.next()?)
                .ok()?;
            (hgauto_ssh::known_hosts::key_type(&blob)? == kind).then(|| {
                (
                    PREFERENCE.iter().position(|p| *p == kind).unwrap_or(99),
                    blob,
                )
            })
        })
        .collect();
    keys.sort_by_key(|(rank, _)| *rank);
    keys.into_iter().map(|(_, b)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> String {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn keys_are_read_from_the_last_block_preferred_type_first() {
        let rsa = blob("ssh-rsa", b"r");
        let ed = blob("ssh-ed25519", b"e");
        let wrong = blob("ssh-rsa", b"w");
        let console = format!(
            "boot...\n-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 {wrong} old\n-----END SSH HOST KEY KEYS-----\n\
             [  12.3] cloud-init[1]: -----BEGIN SSH HOST KEY KEYS-----\n\
             [  12.3] cloud-init[1]: ssh-rsa {rsa} root@ip\n\
             [  12.3] cloud-init[1]: ssh-ed25519 {ed} root@ip\n\
             [  12.3] cloud-init[1]: ssh-ed25519 {wrong} mismatched type\n\
             [  12.3] cloud-init[1]: -----END SSH HOST KEY KEYS-----\n"
        );
        let keys = host_keys_from_console(&console);
        assert_eq!(keys.len(), 2);
        assert!(keys[0].ends_with(b"ssh-ed25519e"));
        assert!(keys[1].ends_with(b"ssh-rsar"));
        assert!(host_keys_from_console("no markers").is_empty());
    }
}
