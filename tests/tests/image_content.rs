//! The Dockerfile's final stage and the lab's offline image (tests/scripts/lab-images.sh) hold
//! the same thing: the same files at the same paths and the same entrypoint.

use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dockerfile_final_stage_matches_the_lab_image() {
    let dockerfile = read("Dockerfile");
    let final_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, s)| s)
        .expect("a multi-stage Dockerfile");
    assert!(
        final_stage.starts_with("scratch"),
        "final stage is FROM scratch"
    );
    let mut copied: Vec<&str> = final_stage
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    copied.sort_unstable();
    assert_eq!(
        copied,
        ["/usr/local/bin/podroute", "/usr/local/bin/podroute-agent"]
    );
    let entrypoint = final_stage
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    assert_eq!(entrypoint, r#"["/usr/local/bin/podroute-agent"]"#);
    assert_eq!(
        final_stage
            .lines()
            .filter(|l| l.starts_with("RUN "))
            .count(),
        0
    );

    let script = read("tests/scripts/lab-images.sh");
    assert!(
        script.contains(&format!("'{entrypoint}'")),
        "lab-images.sh gives the podroute image the Dockerfile's entrypoint"
    );
    assert!(
        script.contains(r#"install -m 0755 "$rel/podroute-agent" "$rel/podroute" "$work/podroute/usr/local/bin/""#),
        "lab-images.sh puts the same two binaries in /usr/local/bin"
    );
}
