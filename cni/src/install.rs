//! `podroute install DIR` and `podroute uninstall DIR`: the plugin puts itself into (or takes
//! itself out of) a node's CNI bin directory, so the DaemonSet's init container needs no shell
//! or `cp` in an image that has neither.
//!
//! A container runtime calls the plugin with no arguments (the command is in `CNI_COMMAND`), so
//! an argument can only come from a person or a manifest.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The plugin's file name in the CNI bin directory (the conflist's `type`).
pub const PLUGIN_NAME: &str = "podroute";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallCommand {
    /// Copy this executable to `DIR/podroute`.
    Install(PathBuf),
    /// Remove `DIR/podroute`.
    Uninstall(PathBuf),
}

/// A command line that is neither `install DIR` nor `uninstall DIR`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "usage: podroute install DIR | podroute uninstall DIR (a runtime calls it with no arguments)"
)]
pub struct UsageError;

/// An install or uninstall that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct InstallError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl InstallCommand {
    /// Parses the arguments after the program name; `None` when there are none (a CNI call).
    pub fn parse(args: &[String]) -> Option<Result<Self, UsageError>> {
        let (first, rest) = args.split_first()?;
        Some(match (first.as_str(), rest) {
            ("install", [dir]) => Ok(Self::Install(PathBuf::from(dir))),
            ("uninstall", [dir]) => Ok(Self::Uninstall(PathBuf::from(dir))),
            _ => Err(UsageError),
        })
    }

    /// Carries the command out; returns what it did, for the log.
    pub fn run(&self, this_exe: &Path) -> Result<String, InstallError> {
        match self {
            Self::Install(dir) => install(this_exe, dir),
            Self::Uninstall(dir) => uninstall(dir),
        }
    }
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError {
        action,
        path,
        source,
    }
}

/// Copies `exe` to `dir/.podroute.tmp`, then renames it over `dir/podroute`: a runtime calling
/// the plugin meanwhile runs the old file or the new one, never half of one.
fn install(exe: &Path, dir: &Path) -> Result<String, InstallError> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).map_err(err("create", dir))?;
    let tmp = dir.join(format!(".{PLUGIN_NAME}.tmp"));
    let dest = dir.join(PLUGIN_NAME);
    let bytes = fs::copy(exe, &tmp).map_err(err("copy to", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(err("chmod", &tmp))?;
    fs::rename(&tmp, &dest).map_err(err("rename to", &dest))?;
    Ok(format!("installed {} ({bytes} bytes)", dest.display()))
}

/// Removes `dir/podroute`; a missing file is not an error (uninstall twice is fine).
fn uninstall(dir: &Path) -> Result<String, InstallError> {
    let dest = dir.join(PLUGIN_NAME);
    match fs::remove_file(&dest) {
        Ok(()) => Ok(format!("removed {}", dest.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(format!("{} was not there", dest.display()))
        }
        Err(e) => Err(err("remove", &dest)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_arguments_is_a_cni_call_and_bad_ones_are_refused() {
        assert_eq!(InstallCommand::parse(&[]), None);
        assert_eq!(
            InstallCommand::parse(&args(&["install", "/x"])),
            Some(Ok(InstallCommand::Install("/x".into())))
        );
        assert_eq!(
            InstallCommand::parse(&args(&["install"])),
            Some(Err(UsageError))
        );
        assert_eq!(
            InstallCommand::parse(&args(&["ADD"])),
            Some(Err(UsageError))
        );
    }

    #[test]
    fn install_replaces_the_plugin_and_uninstall_removes_it_twice() {
        let tmp = tempfile::tempdir().expect("test setup");
        let exe = tmp.path().join("exe");
        fs::write(&exe, b"new plugin").expect("test setup");
        let dir = tmp.path().join("opt/cni/bin");
        fs::create_dir_all(&dir).expect("test setup");
        fs::write(dir.join(PLUGIN_NAME), b"old").expect("test setup");
        InstallCommand::Install(dir.clone())
            .run(&exe)
            .expect("test setup");
        assert_eq!(
            fs::read(dir.join(PLUGIN_NAME)).expect("test setup"),
            b"new plugin"
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("test setup")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![PLUGIN_NAME], "no temporary file is left");
        let un = InstallCommand::Uninstall(dir.clone());
        un.run(&exe).expect("uninstall");
        assert!(!dir.join(PLUGIN_NAME).exists());
        assert!(un.run(&exe).expect("test setup").contains("was not there"));
    }
}
