//! Telemetry: Beijing air-quality readings. Adds `timestamp`, the ISO-8601 time of the
//! reading built from `year`/`month`/`day`/`hour` (Beijing time, UTC+08:00), adds `CO_mg_m3`
//! (CO in mg/m³; the source gives µg/m³), and fails readings outside physical ranges, so a
//! broken sensor's data lands in the error prefix instead of the lake.

use crate::{object, Verdict};

/// Physical ranges of the measured fields: (field, lowest, highest, unit). Sources: WMO
/// records for temperature, pressure and wind; instrument ranges of Beijing's monitoring
/// network (UCI dataset documentation) for the pollutants.
pub const RANGES: [(&str, f64, f64, &str); 10] = [
    ("PM2.5", 0.0, 2_000.0, "µg/m³"),
    ("PM10", 0.0, 3_000.0, "µg/m³"),
    ("SO2", 0.0, 2_000.0, "µg/m³"),
    ("NO2", 0.0, 1_000.0, "µg/m³"),
    ("CO", 0.0, 50_000.0, "µg/m³"),
    ("O3", 0.0, 1_500.0, "µg/m³"),
    ("TEMP", -60.0, 60.0, "°C"),
    ("PRES", 850.0, 1_100.0, "hPa"),
    ("RAIN", 0.0, 300.0, "mm"),
    ("WSPM", 0.0, 75.0, "m/s"),
];

/// Transforms one reading.
pub fn transform(data: &[u8]) -> Verdict {
    let mut r = match object(data) {
        Ok(m) => m,
        Err(v) => return v,
    };
    let part = |k: &str| r.get(k).and_then(serde_json::Value::as_u64);
    let (Some(y), Some(mo), Some(d), Some(h)) = (part("year"), part("month"), part("day"), part("hour")) else {
        return Verdict::Failed("the reading lacks year, month, day or hour".into());
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 {
        return Verdict::Failed(format!("{y}-{mo}-{d} hour {h} is not a valid reading time"));
    }
    for (field, low, high, unit) in RANGES {
        if let Some(v) = r.get(field).and_then(serde_json::Value::as_f64) {
            if !(low..=high).contains(&v) {
                return Verdict::Failed(format!("{field} = {v} {unit} is outside the physical range [{low}, {high}]"));
            }
        }
    }
    r.insert("timestamp".into(), format!("{y:04}-{mo:02}-{d:02}T{h:02}:00:00+08:00").into());
    if let Some(co) = r.get("CO").and_then(serde_json::Value::as_f64) {
        r.insert("CO_mg_m3".into(), (co / 1000.0).into());
    }
    Verdict::json(&serde_json::Value::Object(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_flags() {
        let Verdict::Ok { data, .. } = transform(
            br#"{"No":1,"year":2013,"month":3,"day":1,"hour":0,"PM2.5":4,"CO":300,"TEMP":-0.7,"station":"Aotizhongxin"}"#,
        ) else {
            panic!("a plausible reading is kept")
        };
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["timestamp"], "2013-03-01T00:00:00+08:00");
        assert_eq!(v["CO_mg_m3"], 0.3);
        let bad = transform(br#"{"year":2013,"month":3,"day":1,"hour":0,"TEMP":99.5}"#);
        assert!(matches!(bad, Verdict::Failed(m) if m.contains("TEMP")));
    }
}
