//! How the CLI prints entries, users and devices: aligned tables for people, JSON for scripts.

use anyhow::Result;
use cpm_core::EntryKind;
use cpm_proto::{Device, Entry};
use cpm_store::UserSummary;
use jiff::Timestamp;
use jiff::tz::TimeZone;

fn local(time: Timestamp) -> String {
    time.to_zoned(TimeZone::system()).strftime("%Y-%m-%d %H:%M").to_string()
}

/// Prints rows as columns separated by two spaces; the last column is not padded.
fn table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|row| row.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn entries(entries: &[Entry], long: bool, as_json: bool) -> Result<()> {
    if as_json {
        return json(entries);
    }
    if !long {
        for entry in entries {
            let slash = if entry.kind == EntryKind::Folder { "/" } else { "" };
            println!("{}{slash}", entry.name);
        }
        return Ok(());
    }
    let mut rows = vec![["KIND", "NAME", "TYPE", "SIZE", "MODIFIED", "ID", "LINK"].map(str::to_owned).to_vec()];
    for entry in entries {
        let dash = || "-".to_owned();
        rows.push(vec![
            entry.kind.to_string(),
            entry.name.clone(),
            entry.content_type.clone().unwrap_or_else(dash),
            entry.size.map_or_else(dash, |size| size.to_string()),
            entry.modified.map_or_else(dash, local),
            entry.id.clone(),
            entry.link.clone().unwrap_or_else(dash),
        ]);
    }
    table(&rows);
    Ok(())
}

pub fn users(users: &[UserSummary], as_json: bool) -> Result<()> {
    if as_json {
        let values: Vec<serde_json::Value> = users
            .iter()
            .map(|user| {
                serde_json::json!({
                    "name": user.name, "created": user.created, "objects": user.objects,
                    "bytes": user.bytes, "devices": user.devices,
                })
            })
            .collect();
        return json(&values);
    }
    let mut rows = vec![["USER", "OBJECTS", "BYTES", "DEVICES", "CREATED"].map(str::to_owned).to_vec()];
    for user in users {
        rows.push(vec![
            user.name.clone(),
            user.objects.to_string(),
            user.bytes.to_string(),
            user.devices.to_string(),
            local(user.created),
        ]);
    }
    table(&rows);
    Ok(())
}

pub fn devices(devices: &[Device], current: &str, as_json: bool) -> Result<()> {
    if as_json {
        return json(devices);
    }
    let mut rows = vec![
        ["NAME", "CLASS", "TIME ZONE", "REGISTERED", "LAST SEEN", "LAST SYNC", "STATE"].map(str::to_owned).to_vec(),
    ];
    for device in devices {
        let state = match (device.revoked, device.id == current, device.online) {
            (true, _, _) => "revoked",
            (false, true, true) => "this device, online",
            (false, true, false) => "this device",
            (false, false, true) => "online",
            (false, false, false) => "offline",
        };
        rows.push(vec![
            device.name.clone(),
            device.class.clone(),
            device.time_zone.clone().unwrap_or_else(|| "-".to_owned()),
            local(device.registered),
            device.last_seen.map_or_else(|| "never".to_owned(), local),
            device.last_sync.map_or_else(|| "never".to_owned(), local),
            state.to_owned(),
        ]);
    }
    table(&rows);
    Ok(())
}
