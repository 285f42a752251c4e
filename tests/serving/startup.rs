//! Checks `sluice serve` makes before it serves: a data folder it cannot write is named as
//! such, with what to do.

use std::os::unix::fs::PermissionsExt;

use crate::harness::sluice_command;

#[test]
fn a_data_folder_that_cannot_be_written_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root writes whatever the mode says; no one writes into sysfs.
    let data = if std::fs::write(data.join("probe"), b"").is_ok() {
        std::path::PathBuf::from("/sys")
    } else {
        data
    };
    let plugins = dir.path().join("plugins");
    let out = sluice_command(
        dir.path(),
        &[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.success, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("the data folder {} is not writable", data.display())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--data"), "says what to do: {}", out.stderr);
    assert!(!out.stderr.contains("Error code"), "{}", out.stderr);
}
