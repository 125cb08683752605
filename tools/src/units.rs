// SPDX-License-Identifier: GPL-2.0

//! Sizes for people: binary units, exact where it matters.

/// `bytes` in the largest binary unit that keeps it at least 1, with one decimal where the
/// value is not whole: `4 KiB`, `1.5 MiB`, `100 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scaled = bytes as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 || scaled.fract() == 0.0 {
        format!("{scaled:.0} {}", UNITS[unit])
    } else if scaled < 10.0 {
        format!("{scaled:.2} {}", UNITS[unit])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// A signed change of size: `+4 KiB`, `-1.5 MiB`, `0`.
pub fn delta(before: u64, after: u64) -> String {
    match after.cmp(&before) {
        std::cmp::Ordering::Greater => format!("+{}", size(after - before)),
        std::cmp::Ordering::Less => format!("-{}", size(before - after)),
        std::cmp::Ordering::Equal => "±0".to_string(),
    }
}

/// Parses a size such as `4096`, `64K`, `2M`, `1G`, `16KiB`, `1MB` (binary units). `None` if
/// it is not one, or is 0.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    num.checked_mul(1 << shift).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(100), "100 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(1536 * 1024), "1.50 MiB");
        assert_eq!(size(132 * 1024 + 512), "132.5 KiB");
        assert_eq!(delta(4096, 0), "-4 KiB");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }
}
