//! The acknowledgement audit file: append-only JSON lines, each fsynced
//! before the acknowledgement takes effect (`docs/dashboard.md`, "Audit
//! file").

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{Alarm, AlarmKind, Priority};

/// One line of the audit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLine {
    /// When, ISO-8601 UTC with microseconds.
    pub time: String,
    /// When, µs since the Unix epoch.
    pub time_us: i64,
    /// Who: the clinician identity's public key (`aorta-clinician-1…`).
    pub clinician: String,
    /// What: always `acknowledge`.
    pub action: String,
    /// Which alarm (`PATIENT/KIND/START_US`).
    pub alarm: String,
    /// The alarm's patient.
    pub patient: String,
    /// The alarm's kind (`af`, `brady`, `tachy`, `pause`, `signal_lost`).
    pub kind: String,
    /// Its priority (`high`, `medium`, `low`).
    pub priority: String,
    /// When the alarm's condition began, ISO-8601 UTC.
    pub alarm_start: String,
}

/// The audit file, opened for appending.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    clinician: String,
}

fn name<T: Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

impl AuditLog {
    /// Opens (creating, mode 0600 on Unix) `path` for appending lines signed
    /// off as `clinician`.
    pub fn open(path: &Path, clinician: &str) -> std::io::Result<AuditLog> {
        let mut o = OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let file = o.open(path)?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            clinician: clinician.to_owned(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line acknowledging `alarm` at `now_us`.
    pub fn line(&self, alarm: &Alarm, now_us: i64) -> AuditLine {
        let patient = alarm.id.rsplitn(3, '/').nth(2).unwrap_or_default();
        AuditLine {
            time: super::iso(now_us),
            time_us: now_us,
            clinician: self.clinician.clone(),
            action: "acknowledge".to_owned(),
            alarm: alarm.id.clone(),
            patient: patient.to_owned(),
            kind: name::<AlarmKind>(alarm.kind),
            priority: name::<Priority>(alarm.priority),
            alarm_start: super::iso(alarm.start_us),
        }
    }

    /// Appends the line acknowledging `alarm` and waits for it to reach
    /// the disk.
    pub fn append(&mut self, alarm: &Alarm, now_us: i64) -> std::io::Result<()> {
        let mut line =
            serde_json::to_vec(&self.line(alarm, now_us)).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}
