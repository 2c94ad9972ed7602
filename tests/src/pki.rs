//! The lab's keys and certificates, made with the `openssl` command at `up`:
//! a lab CA, the API server's serving certificate (valid for 198.18.0.250), an admin client
//! certificate in `system:masters`, and the service-account token signing key pair.
//!
//! EC P-256 keys throughout: quick to generate, and accepted by kube-apiserver for serving,
//! client authentication and service-account token signing (ES256).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Result, file_err};
use crate::plan::APISERVER_V4;

/// Where each PKI file lives, relative to the lab's `pki/` directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    /// The lab CA's certificate (trust anchor for the kubeconfig and client-CA for the server).
    pub ca_cert: PathBuf,
    /// The lab CA's private key.
    pub ca_key: PathBuf,
    /// The API server's serving certificate.
    pub server_cert: PathBuf,
    /// The API server's serving key.
    pub server_key: PathBuf,
    /// The admin client certificate (`O=system:masters`).
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
    /// The service-account token signing key (private).
    pub sa_key: PathBuf,
    /// The service-account token verification key (public).
    pub sa_pub: PathBuf,
}

impl PkiPaths {
    /// The PKI file names under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }
}

/// The openssl configuration: an empty subject section (subjects come from `-subj`) and one
/// extension section per certificate role.
pub(crate) fn openssl_config() -> String {
    format!(
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         [ca_ext]\n\
         basicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [server_ext]\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:{APISERVER_V4}, IP:10.96.0.1, IP:127.0.0.1, DNS:kubernetes, \
         DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local\n\
         [client_ext]\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = clientAuth\n"
    )
}

fn openssl() -> Command {
    Command::new("openssl")
}

fn gen_key(path: &Path) -> Result<()> {
    cmd::run(
        openssl()
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(path),
    )
    .map(drop)
}

/// Issues a certificate for `key` signed by the CA, with `subject` and extension `section`.
fn issue(
    dir: &Path,
    p: &PkiPaths,
    key: &Path,
    cert: &Path,
    subject: &str,
    section: &str,
    serial: u32,
) -> Result<()> {
    let conf = dir.join("openssl.cnf");
    let csr = cert.with_extension("csr");
    cmd::run(
        openssl()
            .args(["req", "-new", "-config"])
            .arg(&conf)
            .arg("-key")
            .arg(key)
            .args(["-subj", subject, "-out"])
            .arg(&csr),
    )?;
    cmd::run(
        openssl()
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&p.ca_cert)
            .arg("-CAkey")
            .arg(&p.ca_key)
            .args([
                "-set_serial",
                &serial.to_string(),
                "-days",
                "3650",
                "-extfile",
            ])
            .arg(&conf)
            .args(["-extensions", section, "-out"])
            .arg(cert),
    )?;
    fs::remove_file(&csr).map_err(file_err(&csr))
}

/// Creates every key and certificate under `dir` (which must exist).
pub(crate) fn create(dir: &Path) -> Result<PkiPaths> {
    let p = PkiPaths::new(dir);
    let conf = dir.join("openssl.cnf");
    fs::write(&conf, openssl_config()).map_err(file_err(&conf))?;

    gen_key(&p.ca_key)?;
    cmd::run(
        openssl()
            .args(["req", "-x509", "-new", "-config"])
            .arg(&conf)
            .arg("-key")
            .arg(&p.ca_key)
            .args([
                "-subj",
                "/CN=podroute-lab-ca",
                "-days",
                "3650",
                "-extensions",
                "ca_ext",
                "-out",
            ])
            .arg(&p.ca_cert),
    )?;
    gen_key(&p.server_key)?;
    issue(
        dir,
        &p,
        &p.server_key,
        &p.server_cert,
        "/CN=kube-apiserver",
        "server_ext",
        2,
    )?;
    gen_key(&p.admin_key)?;
    issue(
        dir,
        &p,
        &p.admin_key,
        &p.admin_cert,
        "/O=system:masters/CN=podroute-lab-admin",
        "client_ext",
        3,
    )?;
    gen_key(&p.sa_key)?;
    cmd::run(
        openssl()
            .args(["pkey", "-in"])
            .arg(&p.sa_key)
            .args(["-pubout", "-out"])
            .arg(&p.sa_pub),
    )?;
    Ok(p)
}

/// A kubelet's client certificate and key for Node `node` (`O=system:nodes`,
/// `CN=system:node:<node>`, what the Node authorizer and NodeRestriction expect), issued into
/// `dest` as `kubelet.crt` and `kubelet.key`. Returns (certificate, key).
pub(crate) fn issue_node_client(
    pki_dir: &Path,
    node: &str,
    index: u8,
    dest: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let p = PkiPaths::new(pki_dir);
    let (cert, key) = (dest.join("kubelet.crt"), dest.join("kubelet.key"));
    gen_key(&key)?;
    issue(
        pki_dir,
        &p,
        &key,
        &cert,
        &format!("/O=system:nodes/CN=system:node:{node}"),
        "client_ext",
        // Serials 1-3 are the CA's, the API server's and the admin's.
        100 + u32::from(index),
    )?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificate_names_the_apiserver_address() {
        let conf = openssl_config();
        assert!(conf.contains("IP:198.18.0.250"), "{conf}");
        assert!(conf.contains("extendedKeyUsage = clientAuth"));
    }
}
