//! The master key: 32 bytes from the environment or a file that encrypt the private
//! signing keys at rest with AES-256-GCM.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};

use super::KeyError;
use crate::config::KeySettings;
use crate::domain::throttle::ThrottleKeys;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const ENV_VAR: &str = "PORTCULLIS_MASTER_KEY";
/// HKDF info of the throttle-key secret; a new label (v2) would start fresh counters.
const THROTTLE_KEY_INFO: &[u8] = b"portcullis throttle-key v1";

const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key that encrypts private signing keys at rest. Never serialized; `Debug` shows
/// `MasterKey(..)`.
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl MasterKey {
    /// `PORTCULLIS_MASTER_KEY` wins; else `keys.master_key_file`; else, if allowed, a
    /// generated development key in `keys.generated_master_key_file`.
    pub fn load(settings: &KeySettings) -> Result<Self, KeyError> {
        Self::load_with(settings, env_value()?.as_deref())
    }

    /// As `load`, but never generates a key: a development key is used only if its file
    /// exists. For commands that must work with the key the data is already under.
    pub fn load_existing(settings: &KeySettings) -> Result<Self, KeyError> {
        let generated = Path::new(&settings.generated_master_key_file);
        let settings = KeySettings {
            generate_master_key: settings.generate_master_key
                && !settings.generated_master_key_file.is_empty()
                && generated.exists(),
            ..settings.clone()
        };
        Self::load_with(&settings, env_value()?.as_deref())
    }

    /// `load` with the environment value passed in, so tests need not touch process env.
    fn load_with(settings: &KeySettings, env: Option<&str>) -> Result<Self, KeyError> {
        // An empty variable (`PORTCULLIS_MASTER_KEY=` in a compose file) counts as unset.
        if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
            return decode(value)
                .map(Self::from_bytes)
                .map_err(|reason| KeyError::BadMasterKey(format!("{ENV_VAR}: {reason}")));
        }
        if !settings.master_key_file.is_empty() {
            return read_key_file(Path::new(&settings.master_key_file));
        }
        if settings.generate_master_key {
            return load_or_generate(&settings.generated_master_key_file);
        }
        Err(KeyError::NoMasterKey(
            "no master key: set PORTCULLIS_MASTER_KEY or keys.master_key_file".to_owned(),
        ))
    }

    /// Base64 (standard or URL-safe alphabet, padding optional) of exactly 32 bytes;
    /// surrounding whitespace is ignored.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode(s)
            .map(Self::from_bytes)
            .map_err(KeyError::BadMasterKey)
    }

    /// The base64 key in `path` (surrounding whitespace ignored); warns when the file is
    /// readable by others.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        read_key_file(path)
    }

    /// 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// AES-256-GCM under a random 96-bit nonce: `nonce || ciphertext || tag`. `aad` binds
    /// the blob to its row (the kid), so a blob copied to another row does not decrypt.
    /// A second handle on the same key (the key ring owns one; sign-in seals second-factor
    /// secrets with another).
    pub fn duplicate(&self) -> Self {
        Self(SecretBox::new(Box::new(*self.0.expose_secret())))
    }

    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.aead_key()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| KeyError::Crypto("no randomness for a nonce".to_owned()))?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| KeyError::Crypto("encryption failed".to_owned()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The inverse of `encrypt`. A wrong key, a wrong `aad` and any tampering all give
    /// `MasterKeyMismatch`: GCM cannot tell them apart.
    pub fn decrypt(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyError::MasterKeyMismatch);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::MasterKeyMismatch)?;
        let mut buf = sealed.to_vec();
        let len = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| KeyError::MasterKeyMismatch)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// The secret that keys sign-in throttle counters (HKDF-SHA256, RFC 5869, with its own
    /// info label, so it reveals nothing about the key that encrypts signing keys).
    /// Rotating the master key changes it, which only resets the short-lived lockout
    /// counters.
    pub fn throttle_keys(&self) -> Result<ThrottleKeys, KeyError> {
        let prk = Salt::new(HKDF_SHA256, &[]).extract(self.0.expose_secret());
        let mut secret = [0u8; KEY_LEN];
        prk.expand(&[THROTTLE_KEY_INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut secret))
            .map_err(|_| KeyError::Crypto("deriving the throttle key failed".to_owned()))?;
        let keys = ThrottleKeys::new(&secret);
        secret.fill(0);
        Ok(keys)
    }

    fn aead_key(&self) -> Result<LessSafeKey, KeyError> {
        UnboundKey::new(&AES_256_GCM, self.0.expose_secret())
            .map(LessSafeKey::new)
            .map_err(|_| KeyError::Crypto("unusable master key".to_owned()))
    }
}

impl PartialEq for MasterKey {
    /// Constant-time, though only the CLI compares master keys.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.expose_secret().ct_eq(other.0.expose_secret()).into()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn env_value() -> Result<Option<String>, KeyError> {
    match std::env::var_os(ENV_VAR) {
        None => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|_| KeyError::BadMasterKey(format!("{ENV_VAR} is not valid UTF-8"))),
    }
}

/// The reason is safe to log: it never contains the value.
fn decode(s: &str) -> Result<[u8; KEY_LEN], String> {
    let s = s.trim();
    let bytes = LENIENT_STANDARD
        .decode(s)
        .or_else(|_| LENIENT_URL_SAFE.decode(s))
        .map_err(|_| "the master key is not valid base64".to_owned())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "the master key must be {KEY_LEN} bytes, base64-encoded (`openssl rand -base64 32`); \
             got {} bytes",
            bytes.len()
        )
    })
}

fn read_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeyError::BadMasterKey(format!("reading {}: {e}", path.display())))?;
    warn_if_shared(path);
    decode(&text)
        .map(MasterKey::from_bytes)
        .map_err(|reason| KeyError::BadMasterKey(format!("{}: {reason}", path.display())))
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the master key file is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

/// Development only: reuses the generated key file, creating it (mode 0600) if missing.
fn load_or_generate(file: &str) -> Result<MasterKey, KeyError> {
    if file.is_empty() {
        return Err(KeyError::BadMasterKey(
            "keys.generate_master_key is set but keys.generated_master_key_file is empty"
                .to_owned(),
        ));
    }
    let path = Path::new(file);
    let key = match create_new_private(path) {
        Ok(mut out) => {
            let key = MasterKey::generate();
            let encoded = STANDARD.encode(key.0.expose_secret());
            out.write_all(encoded.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.sync_all())
                .map_err(|e| KeyError::BadMasterKey(format!("writing {}: {e}", path.display())))?;
            tracing::warn!(path = %path.display(), "generated a new master key");
            key
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path)?,
        Err(e) => {
            return Err(KeyError::BadMasterKey(format!(
                "creating {}: {e}",
                path.display()
            )));
        }
    };
    tracing::warn!(
        path = %path.display(),
        "!!! DEVELOPMENT ONLY: the signing keys are encrypted with a master key generated into \
         a local file. Losing that file loses every signing key. In production set \
         PORTCULLIS_MASTER_KEY or keys.master_key_file, and keys.generate_master_key = false !!!"
    );
    Ok(key)
}

fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut dirs = std::fs::DirBuilder::new();
        dirs.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
        dirs.create(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn settings(master_key_file: &str, generate: bool, generated: &str) -> KeySettings {
        KeySettings {
            master_key_file: master_key_file.to_owned(),
            generate_master_key: generate,
            generated_master_key_file: generated.to_owned(),
            reload_interval: Duration::from_secs(30),
            rotation_interval: Duration::from_secs(30 * 86_400),
            prepublication: Duration::from_secs(86_400),
            algorithms: vec![crate::domain::jws::SigningAlg::RS256],
        }
    }

    fn bytes(key: &MasterKey) -> [u8; KEY_LEN] {
        *key.0.expose_secret()
    }

    fn expected() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| u8::try_from(i).unwrap_or(0))
    }

    #[test]
    fn throttle_keys_are_derived_per_master_key_and_stable() {
        let keys = |k: &MasterKey| {
            k.throttle_keys()
                .unwrap_or_else(|e| panic!("{e}"))
                .key(None, "alice")
        };
        let a = MasterKey::from_base64(KEY_B64).unwrap_or_else(|e| panic!("{e}"));
        let again = MasterKey::from_base64(KEY_B64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys(&a), keys(&again), "the same across restarts");
        assert_ne!(keys(&a), keys(&MasterKey::generate()));
        // HKDF output, not the master key itself used as the HMAC key.
        assert_ne!(keys(&a), ThrottleKeys::new(&expected()).key(None, "alice"));
    }

    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let key = MasterKey::generate();
        let blob = key
            .encrypt(b"private key", b"kid-1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(blob.len(), NONCE_LEN + 11 + TAG_LEN);
        assert!(!blob.windows(11).any(|w| w == b"private key"));
        let plain = key
            .decrypt(&blob, b"kid-1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain, b"private key");
    }

    #[test]
    fn each_encryption_uses_a_fresh_nonce() {
        let key = MasterKey::generate();
        let a = key
            .encrypt(b"same", b"kid")
            .unwrap_or_else(|e| panic!("{e}"));
        let b = key
            .encrypt(b"same", b"kid")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_key_wrong_aad_and_tampering_are_a_mismatch() {
        let key = MasterKey::generate();
        let blob = key
            .encrypt(b"private key", b"kid-1")
            .unwrap_or_else(|e| panic!("{e}"));

        let other = MasterKey::generate();
        assert!(matches!(
            other.decrypt(&blob, b"kid-1"),
            Err(KeyError::MasterKeyMismatch)
        ));
        assert!(matches!(
            key.decrypt(&blob, b"kid-2"),
            Err(KeyError::MasterKeyMismatch)
        ));
        for i in 0..blob.len() {
            let mut tampered = blob.clone();
            tampered[i] ^= 0x01;
            assert!(
                matches!(
                    key.decrypt(&tampered, b"kid-1"),
                    Err(KeyError::MasterKeyMismatch)
                ),
                "flipping byte {i} went unnoticed"
            );
        }
        for len in [0, NONCE_LEN, NONCE_LEN + TAG_LEN - 1, blob.len() - 1] {
            assert!(matches!(
                key.decrypt(&blob[..len], b"kid-1"),
                Err(KeyError::MasterKeyMismatch)
            ));
        }
    }

    #[test]
    fn from_base64_accepts_both_alphabets_with_or_without_padding() {
        for input in [
            KEY_B64.to_owned(),
            KEY_B64.trim_end_matches('=').to_owned(),
            format!("  {KEY_B64}\n"),
        ] {
            let key = MasterKey::from_base64(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(bytes(&key), expected());
        }
        // 0xfb bytes encode to '+' and '/' in the standard alphabet, '-' and '_' in URL-safe.
        let raw = [0xfbu8; KEY_LEN];
        let standard = STANDARD.encode(raw);
        let url_safe = URL_SAFE_NO_PAD.encode(raw);
        assert!(standard.contains('+') && url_safe.contains('-'));
        for input in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            format!("{url_safe}="),
        ] {
            let key = MasterKey::from_base64(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(bytes(&key), raw);
        }
    }

    #[test]
    fn from_base64_rejects_wrong_lengths_and_garbage() {
        for input in [
            String::new(),
            "   ".to_owned(),
            STANDARD.encode([7u8; 31]),
            STANDARD.encode([7u8; 33]),
            STANDARD.encode([7u8; 16]),
            "not base64 at all!!".to_owned(),
            format!("{KEY_B64}$"),
        ] {
            assert!(
                matches!(
                    MasterKey::from_base64(&input),
                    Err(KeyError::BadMasterKey(_))
                ),
                "{input:?} was accepted"
            );
        }
    }

    #[test]
    fn bad_key_errors_do_not_echo_the_value() {
        let secretish = STANDARD.encode([9u8; 31]);
        let err = MasterKey::from_base64(&secretish)
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(!err.to_string().contains(&secretish));
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::from_base64(KEY_B64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
    }

    #[test]
    fn environment_value_wins_over_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("master.key");
        std::fs::write(&file, STANDARD.encode([1u8; 32])).unwrap_or_else(|e| panic!("{e}"));
        let s = settings(&file.display().to_string(), true, "");
        let key = MasterKey::load_with(&s, Some(KEY_B64)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes(&key), expected());
    }

    #[test]
    fn bad_environment_value_is_an_error_not_a_fallback() {
        let s = settings("", true, "");
        let err = MasterKey::load_with(&s, Some("short"))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert!(matches!(err, KeyError::BadMasterKey(ref m) if m.contains(ENV_VAR)));
    }

    #[test]
    fn loads_from_file_with_whitespace_trimmed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("master.key");
        std::fs::write(&file, format!("{KEY_B64}\n")).unwrap_or_else(|e| panic!("{e}"));
        let s = settings(&file.display().to_string(), false, "");
        let key = MasterKey::load_with(&s, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes(&key), expected());
        // An empty environment variable counts as unset.
        let key = MasterKey::load_with(&s, Some("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes(&key), expected());
    }

    #[test]
    fn missing_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("absent.key");
        let s = settings(&file.display().to_string(), true, "");
        assert!(matches!(
            MasterKey::load_with(&s, None),
            Err(KeyError::BadMasterKey(_))
        ));
    }

    #[test]
    fn generated_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("data/nested/master.key");
        let s = settings("", true, &file.display().to_string());

        let first = MasterKey::load_with(&s, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file)
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = MasterKey::load_with(&s, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes(&first), bytes(&second));

        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let from_file = MasterKey::from_base64(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes(&from_file), bytes(&first));
    }

    #[test]
    fn nothing_given_and_no_generation_is_no_master_key() {
        let s = settings("", false, "data/master.key");
        let err = MasterKey::load_with(&s, None)
            .err()
            .unwrap_or_else(|| panic!("a key appeared from nowhere"));
        assert!(matches!(err, KeyError::NoMasterKey(_)));
        assert_eq!(
            err.to_string(),
            "no master key: set PORTCULLIS_MASTER_KEY or keys.master_key_file"
        );
    }
}
