//! The operator's own certificate authority, and the certificates it issues with it for
//! `spec.security.tls`.
//!
//! Contract:
//! - One CA per operator installation, in the Secret [`CA_SECRET_NAME`] of the operator's
//!   namespace: the only Secret the operator reads (its Role names it). It holds three CA
//!   certificates: `current` (signs every certificate issued now), `next` (trusted already, so
//!   that rotating to it needs no second rollout) and, after a rotation, `previous` (still
//!   trusted, so certificates it signed stay valid until they are issued again).
//! - Rotation: when `current` has less than [`CA_MIN_REMAINING`] left, `next` becomes
//!   `current` and a new `next` is made; the CounterClusters then see a new CA fingerprint and
//!   issue their certificates again. Every CA lives [`CA_LIFETIME`] from becoming `current`,
//!   so a rotation happens every two years.
//! - Leaf certificates live [`LEAF_LIFETIME`] and are issued again two thirds into it. Keys are
//!   ECDSA P-256, made in memory and written only into the CounterCluster's Secrets.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Name of the Secret holding the operator's CA, in the operator's namespace.
pub const CA_SECRET_NAME: &str = "highpress-operator-ca";
/// How long a CA is valid from the moment it becomes `current`.
pub const CA_LIFETIME: Duration = Duration::days(3 * 365);
/// A `current` CA with less than this left is rotated out.
pub const CA_MIN_REMAINING: Duration = Duration::days(365);
/// How long an issued certificate is valid.
pub const LEAF_LIFETIME: Duration = Duration::days(30);
/// Leeway for clocks that run behind the operator's.
const BACKDATE: Duration = Duration::minutes(5);

/// Why the CA could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("reading or writing the Secret {namespace}/{CA_SECRET_NAME}: {source}")]
    Api {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the Secret {CA_SECRET_NAME} is not a highpress CA: {0}")]
    Malformed(String),
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

/// One CA: its certificate, key and expiry.
#[derive(Clone)]
struct Authority {
    cert_pem: String,
    key_pem: String,
    not_after: OffsetDateTime,
}

impl Authority {
    /// A new self-signed CA valid until `not_after`.
    fn generate(now: OffsetDateTime, not_after: OffsetDateTime) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "highpress");
        name.push(
            DnType::CommonName,
            format!("highpress-operator CA {}", now.unix_timestamp()),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }

    fn fingerprint(&self) -> Result<String, CaError> {
        let der = pem_contents(&self.cert_pem)?;
        Ok(Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// The operator's CA: `current`, `next` and possibly `previous`.
#[derive(Clone)]
pub struct CertificateAuthority {
    current: Authority,
    next: Authority,
    previous: Option<Authority>,
}

/// What a certificate is for.
pub struct LeafRequest {
    /// The subject's common name.
    pub common_name: String,
    /// The DNS names it is valid for.
    pub dns_names: Vec<String>,
    /// Usable as a TLS client certificate too (every certificate is a server certificate).
    pub client_auth: bool,
}

/// An issued certificate, its key, and the CA bundle to trust alongside it.
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_bundle_pem: String,
    pub not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// A new CA: `current` valid for [`CA_LIFETIME`], and its successor.
    pub fn generate(now: OffsetDateTime) -> Result<Self, CaError> {
        let current = Authority::generate(now, now + CA_LIFETIME)?;
        let next = Authority::generate(now, successor_not_after(&current))?;
        Ok(Self {
            current,
            next,
            previous: None,
        })
    }

    /// This CA a rotation later, if `current` is due for one at `now`.
    pub fn rotated(&self, now: OffsetDateTime) -> Result<Option<Self>, CaError> {
        if self.current.not_after - now >= CA_MIN_REMAINING {
            return Ok(None);
        }
        let current = self.next.clone();
        let next = Authority::generate(now, successor_not_after(&current))?;
        Ok(Some(Self {
            current,
            next,
            previous: Some(self.current.clone()),
        }))
    }

    /// SHA-256 of the `current` certificate, hex: what the issued certificates record.
    pub fn fingerprint(&self) -> Result<String, CaError> {
        self.current.fingerprint()
    }

    /// Every certificate to trust: `previous` (if any), `current` and `next`, PEM.
    pub fn trust_bundle(&self) -> String {
        self.previous
            .iter()
            .chain([&self.current, &self.next])
            .map(|a| a.cert_pem.as_str())
            .collect()
    }

    /// A certificate for `request`, signed by `current`, valid for [`LEAF_LIFETIME`] (never past
    /// the CA's own expiry).
    pub fn issue(
        &self,
        request: &LeafRequest,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CaError> {
        let key = KeyPair::from_pem(&self.current.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.current.cert_pem, key)?;
        let mut params = CertificateParams::new(request.dns_names.clone())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "highpress");
        name.push(DnType::CommonName, request.common_name.clone());
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if request.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        let not_after = (now + LEAF_LIFETIME).min(self.current.not_after);
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        let leaf_key = KeyPair::generate()?;
        let cert = params.signed_by(&leaf_key, &issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_bundle_pem: self.trust_bundle(),
            not_after,
        })
    }

    /// Reads the CA back from its Secret's data.
    pub fn from_secret(secret: &Secret) -> Result<Self, CaError> {
        let data = secret.data.as_ref();
        let field = |key: &str| -> Option<String> {
            data?
                .get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        let authority = |slot: &str| -> Result<Option<Authority>, CaError> {
            let (Some(cert_pem), Some(key_pem), Some(not_after)) = (
                field(&format!("{slot}.crt")),
                field(&format!("{slot}.key")),
                field(&format!("{slot}.not-after")),
            ) else {
                return Ok(None);
            };
            let not_after = OffsetDateTime::parse(not_after.trim(), &Rfc3339)
                .map_err(|e| CaError::Malformed(format!("{slot}.not-after: {e}")))?;
            Ok(Some(Authority {
                cert_pem,
                key_pem,
                not_after,
            }))
        };
        let missing = |slot: &str| CaError::Malformed(format!("no {slot}.crt/.key/.not-after"));
        Ok(Self {
            current: authority("current")?.ok_or_else(|| missing("current"))?,
            next: authority("next")?.ok_or_else(|| missing("next"))?,
            previous: authority("previous")?,
        })
    }

    /// The CA as the data of its Secret.
    pub fn to_secret(&self, namespace: &str) -> Secret {
        let mut data = std::collections::BTreeMap::new();
        let slots = [
            ("current", Some(&self.current)),
            ("next", Some(&self.next)),
            ("previous", self.previous.as_ref()),
        ];
        for (slot, authority) in slots {
            let Some(a) = authority else { continue };
            let not_after = a
                .not_after
                .format(&Rfc3339)
                .expect("a certificate's expiry is a formattable date");
            for (suffix, value) in [
                ("crt", a.cert_pem.clone()),
                ("key", a.key_pem.clone()),
                ("not-after", not_after),
            ] {
                data.insert(format!("{slot}.{suffix}"), ByteString(value.into_bytes()));
            }
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(CA_SECRET_NAME.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "highpress-operator".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(data),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        }
    }

    /// The CA in `namespace`: read from its Secret, made and stored if there is none, and
    /// rotated (and stored) when due. Only the leader calls this, but its reconciles of
    /// different CounterClusters run at once: when another one made or rotated the CA first
    /// (the create finds the Secret, or the replace finds a newer resourceVersion), the
    /// winner's CA is read and used.
    pub async fn load_or_create(
        secrets: &Api<Secret>,
        namespace: &str,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let api_error = |source| CaError::Api {
            namespace: namespace.to_owned(),
            source,
        };
        let (written, ca, what) = match secrets.get_opt(CA_SECRET_NAME).await.map_err(api_error)? {
            None => {
                let ca = Self::generate(now)?;
                let written = secrets
                    .create(&PostParams::default(), &ca.to_secret(namespace))
                    .await;
                (written, ca, "made")
            }
            Some(stored) => {
                let ca = Self::from_secret(&stored)?;
                let Some(rotated) = ca.rotated(now)? else {
                    return Ok(ca);
                };
                let mut secret = rotated.to_secret(namespace);
                secret.metadata.resource_version = stored.metadata.resource_version.clone();
                let written = secrets
                    .replace(CA_SECRET_NAME, &PostParams::default(), &secret)
                    .await;
                (written, rotated, "rotated")
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(namespace, "{what} the operator's CA");
                Ok(ca)
            }
            // Another reconcile made or rotated it first: use the CA it stored.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Self::from_secret(&secrets.get(CA_SECRET_NAME).await.map_err(api_error)?)
            }
            Err(e) => Err(api_error(e)),
        }
    }
}

/// The expiry of the CA that will follow `current`: [`CA_LIFETIME`] after it takes over.
fn successor_not_after(current: &Authority) -> OffsetDateTime {
    current.not_after - CA_MIN_REMAINING + CA_LIFETIME
}

/// The DER bytes of a PEM certificate.
fn pem_contents(pem: &str) -> Result<Vec<u8>, CaError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.to_vec())
        .map_err(|e| CaError::Malformed(format!("a certificate is not PEM: {e}")))
}

/// `time` as RFC 3339, as the status records it.
pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339)
        .expect("a certificate date is a formattable date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_secret_round_trip_keeps_the_ca() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        let back = CertificateAuthority::from_secret(&ca.to_secret("ops")).unwrap();
        assert_eq!(back.fingerprint().unwrap(), ca.fingerprint().unwrap());
        assert_eq!(back.trust_bundle(), ca.trust_bundle());
        assert_eq!(back.current.not_after, ca.current.not_after);
        assert!(back.previous.is_none());
    }

    #[test]
    fn rotation_promotes_next_and_keeps_the_old_current_trusted() {
        let ca = CertificateAuthority::generate(now()).unwrap();
        assert!(ca.rotated(now() + Duration::days(700)).unwrap().is_none());
        let later = now() + Duration::days(731);
        let rotated = ca.rotated(later).unwrap().expect("due after two years");
        assert_eq!(rotated.current.cert_pem, ca.next.cert_pem);
        assert_eq!(
            rotated.previous.as_ref().map(|p| &p.cert_pem),
            Some(&ca.current.cert_pem)
        );
        // The promoted CA has its whole lifetime ahead, so it is not rotated again at once.
        assert_eq!(
            rotated.current.not_after - later,
            CA_LIFETIME - Duration::days(1)
        );
        assert!(rotated.rotated(later).unwrap().is_none());
        let bundle = rotated.trust_bundle();
        for pem in [
            &ca.current.cert_pem,
            &ca.next.cert_pem,
            &rotated.next.cert_pem,
        ] {
            assert!(bundle.contains(pem.as_str()));
        }
    }

    #[test]
    fn a_missing_slot_is_reported() {
        let mut secret = CertificateAuthority::generate(now())
            .unwrap()
            .to_secret("ops");
        secret.data.as_mut().unwrap().remove("next.key");
        let error = CertificateAuthority::from_secret(&secret).err().unwrap();
        assert!(error.to_string().contains("next"), "{error}");
    }

    #[test]
    fn pem_bodies_decode_to_the_der_that_rcgen_made() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(pem_contents(&cert.pem()).unwrap(), cert.der().to_vec());
    }
}
