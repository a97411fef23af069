//! The plan of a sweep: seeds and grid parsed, grid points and their names, the runs, the plan file and its comparison, the sweep directory opened and locked.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use engram_agents::run::checkpoint::{self, Counters};
use engram_agents::run::run_dir::{
    lock_pid_file, PidLock, PidLockError, CONFIG_FILE, COUNTERS_FILE,
};
use engram_agents::TrainConfig;
use serde_json::{json, Value};

use super::SweepArgs;
use crate::cli::train::DEFAULT_CONFIG;

/// The plan of a sweep, written when it starts and compared when it is run again.
const PLAN_FILE: &str = "sweep.json";
/// The folder of the runs' output (`<run>.log`: stdout and stderr of each child).
const LOGS_DIR: &str = "logs";
/// The lock a running sweep holds on its directory.
const LOCK_FILE: &str = "sweep.lock";
/// Version of the plan file's layout.
const PLAN_VERSION: u64 = 1;
/// The most seeds one sweep takes (a guard against `1-1000000000`).
const MAX_SEEDS: u64 = 10_000;
/// The longest value in a grid point's name.
const MAX_VALUE_LABEL: usize = 40;

/// One `--grid` axis.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Axis {
    /// The config key, `section.key`.
    pub(super) key: String,
    /// Its values as written (TOML).
    pub(super) values: Vec<String>,
}

/// One combination of grid values.
#[derive(Debug, Clone)]
pub(super) struct Point {
    /// Filesystem-safe name, e.g. `learning_rate=0.001`.
    pub(super) name: String,
    /// `key=value` overrides, one per axis.
    pub(super) sets: Vec<String>,
    /// `(key, value as written)`, one per axis.
    pub(super) values: Vec<(String, String)>,
}

/// One run of the sweep: a grid point and a seed.
#[derive(Debug, Clone)]
pub(super) struct Run {
    /// `<point>_s<seed>`.
    pub(super) name: String,
    /// Index into the points.
    pub(super) point: usize,
    /// Its seed.
    pub(super) seed: u64,
    /// Its run directory.
    pub(super) dir: PathBuf,
    /// Its child's output.
    pub(super) log: PathBuf,
    /// `run.total_steps` of its planned config.
    total_steps: u64,
}

/// A sweep checked and ready to launch: its config, grid points and seeds, and its plan.
pub(super) struct Plan {
    /// `--config`, absolute (`None`: the embedded default).
    pub(super) config_path: Option<PathBuf>,
    /// The grid axes.
    pub(super) axes: Vec<Axis>,
    /// Every combination of the axes' values.
    pub(super) points: Vec<Point>,
    /// The seeds.
    pub(super) seeds: Vec<u64>,
    /// `run.total_steps` of each point.
    total_steps: Vec<u64>,
    /// `run.runs_dir` of the base config.
    pub(super) runs_dir: PathBuf,
    /// What `sweep.json` holds.
    pub(super) json: Value,
}

/// Check the arguments, the config and every grid point's config; nothing is written.
pub(super) fn plan(args: &SweepArgs) -> Result<Plan> {
    let (config_path, config_text, origin) = match &args.config {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            (Some(abs), text, format!("in {}", path.display()))
        }
        None => (
            None,
            DEFAULT_CONFIG.to_string(),
            "in the embedded default config".to_string(),
        ),
    };
    let axes = args
        .grids
        .iter()
        .map(|g| parse_grid(g))
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.key == a.key) {
            bail!(
                "--grid `{}` is given twice; list all its values in one --grid",
                a.key
            );
        }
    }
    let mut base_sets = args.sets.clone();
    if let Some(d) = &args.device {
        base_sets.push(format!("run.device=\"{d}\""));
    }
    let base = resolve(&config_text, &base_sets, &origin)?;
    let seeds = match &args.seeds {
        Some(text) => parse_seeds(text)?,
        None => vec![base.run.seed],
    };
    let points = grid_points(&axes);
    let mut total_steps = Vec::with_capacity(points.len());
    for point in &points {
        for (k, &seed) in seeds.iter().enumerate() {
            let mut sets = base_sets.clone();
            sets.extend(point.sets.iter().cloned());
            sets.push(format!("run.seed={seed}"));
            let config = TrainConfig::from_toml(&config_text, &sets).map_err(|e| {
                let mut message = e.to_string();
                for s in &point.sets {
                    message = message.replace(&format!("--set `{s}`"), &format!("--grid `{s}`"));
                }
                message = message.replace(
                    &format!("--set `run.seed={seed}`"),
                    &format!("--seeds: seed {seed}"),
                );
                // The seed is named when only some seeds fail; the config file when the
                // message names no flag.
                let mut what = format!("grid point {}", point.name);
                if k > 0 {
                    let _ = write!(what, " with seed {seed}");
                }
                if !message.contains("--set `") && !message.contains("--grid `") {
                    let _ = write!(what, " ({origin})");
                }
                anyhow::anyhow!(message).context(what)
            })?;
            if k == 0 {
                total_steps.push(config.run.total_steps);
            }
        }
    }
    let mut plugins = Vec::new();
    for path in &args.plugins {
        let abs = path
            .canonicalize()
            .with_context(|| format!("--plugin {}: cannot find the library", path.display()))?;
        plugins.push(abs);
    }
    engram_envs::load_plugins(&plugins)?;
    engram_agents::run::device::device_for(&base.run.device)?;
    let json = json!({
        "version": PLAN_VERSION,
        "config": {
            "path": config_path.as_ref().map(|p| p.display().to_string()),
            "toml": config_text,
        },
        "sets": args.sets,
        "grid": axes.iter().map(|a| json!({"key": a.key, "values": a.values})).collect::<Vec<_>>(),
        "seeds": seeds,
        "plugins": plugins.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "device": args.device,
    });
    Ok(Plan {
        config_path,
        axes,
        points,
        seeds,
        total_steps,
        runs_dir: PathBuf::from(&base.run.runs_dir),
        json,
    })
}

/// Make the sweep directory, or check that the plan it holds is this one; take its lock and
/// write the plan. Whether the sweep is resumed, and the lock (held while it is kept).
pub(super) fn open_sweep_dir(sweep_dir: &Path, plan: &Value) -> Result<(bool, PidLock)> {
    let plan_path = sweep_dir.join(PLAN_FILE);
    let resuming = plan_path.is_file();
    if resuming {
        let text = fs::read_to_string(&plan_path)
            .with_context(|| format!("cannot read {}", plan_path.display()))?;
        let stored: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sweep plan", plan_path.display()))?;
        let differences = plan_differences(&stored, plan);
        if !differences.is_empty() {
            bail!(
                "{} holds a different sweep: {}; run it with the arguments it was started with \
                 to resume it, or choose another --sweep-dir for this one",
                sweep_dir.display(),
                differences.join("; ")
            );
        }
    } else if sweep_dir.exists() && fs::read_dir(sweep_dir).map_or(true, |mut d| d.next().is_some())
    {
        bail!(
            "{} exists and is not a sweep directory (it has no {PLAN_FILE}); choose another \
             --sweep-dir",
            sweep_dir.display()
        );
    }
    let logs = sweep_dir.join(LOGS_DIR);
    fs::create_dir_all(&logs)
        .with_context(|| format!("cannot create the sweep directory {}", logs.display()))?;
    let lock = lock_sweep_dir(sweep_dir)?;
    if !resuming {
        // Written whole or not at all: a half-written plan would refuse every resume.
        let text = serde_json::to_string_pretty(plan)?;
        let tmp = sweep_dir.join(format!("{PLAN_FILE}.tmp"));
        fs::write(&tmp, text + "\n")
            .and_then(|()| fs::rename(&tmp, &plan_path))
            .with_context(|| format!("cannot write {}", plan_path.display()))?;
    }
    Ok((resuming, lock))
}

/// The runs of a plan, seed by seed (all grid points of the first seed come first).
pub(super) fn runs_of(plan: &Plan, sweep_dir: &Path) -> Vec<Run> {
    let logs = sweep_dir.join(LOGS_DIR);
    plan.seeds
        .iter()
        .flat_map(|&seed| (0..plan.points.len()).map(move |p| (p, seed)))
        .map(|(point, seed)| {
            let name = format!("{}_s{seed}", plan.points[point].name);
            Run {
                dir: sweep_dir.join(&name),
                log: logs.join(format!("{name}.log")),
                name,
                point,
                seed,
                total_steps: plan.total_steps[point],
            }
        })
        .collect()
}

/// Resolve `text` with `sets`, the error naming where the text came from.
fn resolve(text: &str, sets: &[String], origin: &str) -> Result<TrainConfig> {
    match TrainConfig::from_toml(text, sets) {
        Ok(config) => Ok(config),
        Err(e) if e.to_string().contains("--set `") => Err(e.into()),
        Err(e) => Err(anyhow::Error::from(e).context(origin.to_string())),
    }
}

/// `parent/<name>_<unix secs>`, with `-2`, `-3`, … when that exists.
pub(super) fn unused_dir(parent: &Path, name: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let first = parent.join(format!("{name}_{secs}"));
    let mut dir = first.clone();
    let mut k = 2;
    while dir.exists() {
        dir = parent.join(format!("{name}_{secs}-{k}"));
        k += 1;
    }
    dir
}

/// Take the sweep directory's lock (released when dropped or when the process dies).
fn lock_sweep_dir(dir: &Path) -> Result<PidLock> {
    let path = dir.join(LOCK_FILE);
    lock_pid_file(&path).map_err(|e| match e {
        PidLockError::Held(pid) => anyhow::anyhow!(
            "another `engram sweep` ({}) is running in {}; wait for it or stop it first",
            pid.map_or("a process that is still starting".into(), |p| format!(
                "PID {p}"
            )),
            dir.display()
        ),
        PidLockError::Io(e) => {
            anyhow::Error::new(e).context(format!("cannot lock {}", path.display()))
        }
    })
}

/// What differs between a stored plan and this one, field by field.
fn plan_differences(stored: &Value, now: &Value) -> Vec<String> {
    let describe = |v: &Value| match v {
        Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    let mut out = vec![];
    if stored["version"] != now["version"] {
        out.push(format!(
            "its {PLAN_FILE} has layout version {} (this engram writes {PLAN_VERSION})",
            describe(&stored["version"])
        ));
        return out;
    }
    if stored["config"]["path"] != now["config"]["path"] {
        out.push(format!(
            "--config was {}, now {}",
            describe(&stored["config"]["path"]),
            describe(&now["config"]["path"])
        ));
    } else if stored["config"]["toml"] != now["config"]["toml"] {
        out.push(match now["config"]["path"].as_str() {
            Some(path) => format!("the config file {path} changed since the sweep started"),
            None => "the embedded default config changed since the sweep started".to_string(),
        });
    }
    let grid_text = |v: &Value| {
        let items: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|g| {
                        let values: Vec<&str> = g["values"]
                            .as_array()
                            .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        format!("{}={}", g["key"].as_str().unwrap_or("?"), values.join(","))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(" ")
        }
    };
    for (field, flag) in [
        ("sets", "--set"),
        ("seeds", "--seeds"),
        ("plugins", "--plugin"),
        ("device", "--device"),
    ] {
        if stored[field] != now[field] {
            out.push(format!(
                "{flag} was {}, now {}",
                describe(&stored[field]),
                describe(&now[field])
            ));
        }
    }
    if stored["grid"] != now["grid"] {
        out.push(format!(
            "--grid was {}, now {}",
            grid_text(&stored["grid"]),
            grid_text(&now["grid"])
        ));
    }
    out
}

/// Parse `--seeds`: comma-separated seeds and inclusive ranges (`1-5`, `1,3,7`, `1-3,9`).
fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let form = "write seeds like `1-5`, `1,3,7` or `1-3,9`";
    let number = |piece: &str, part: &str| -> Result<u64> {
        piece.trim().parse::<u64>().map_err(|_| {
            if piece.trim().is_empty() {
                anyhow::anyhow!(
                    "--seeds `{text}`: `{part}` is not a seed or a range of seeds (whole numbers ≥ 0); {form}"
                )
            } else {
                anyhow::anyhow!(
                    "--seeds `{text}`: `{}` is not a seed (a whole number ≥ 0); {form}",
                    piece.trim()
                )
            }
        })
    };
    let mut seeds: Vec<u64> = vec![];
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            bail!("--seeds `{text}` has an empty entry; {form}");
        }
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a, part)?, number(b, part)?),
            None => {
                let s = number(part, part)?;
                (s, s)
            }
        };
        if first > last {
            bail!("--seeds `{text}`: the range `{part}` runs backwards; {form}");
        }
        if last - first >= MAX_SEEDS || seeds.len() as u64 + (last - first) >= MAX_SEEDS {
            bail!("--seeds `{text}` asks for more than {MAX_SEEDS} seeds");
        }
        for s in first..=last {
            if seeds.contains(&s) {
                bail!("--seeds `{text}` lists seed {s} twice");
            }
            seeds.push(s);
        }
    }
    Ok(seeds)
}

/// Split at the commas outside brackets, braces and quotes (`[64,64],[32]` is two values).
fn split_values(text: &str) -> Vec<&str> {
    let mut parts = vec![];
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Parse one `--grid SECTION.KEY=V1,V2,...`.
fn parse_grid(text: &str) -> Result<Axis> {
    let form = "write it as SECTION.KEY=V1,V2,... with TOML values, e.g. \
                `--grid ppo.learning_rate=1e-3,3e-4` (a string in quotes: \
                `--grid 'env.id=\"CartPole-v1\",\"Acrobot-v1\"'`)";
    let Some((key, values)) = text.split_once('=') else {
        bail!("--grid `{text}` has no `=`; {form}");
    };
    let key = key.trim();
    if !key.contains('.') || key.split('.').any(|k| k.trim().is_empty()) {
        bail!("--grid `{text}`: `{key}` is not a SECTION.KEY config key; {form}");
    }
    let values: Vec<String> = split_values(values)
        .into_iter()
        .map(|v| v.trim().to_string())
        .collect();
    if values.iter().any(String::is_empty) {
        bail!("--grid `{text}` has an empty value; {form}");
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            bail!("--grid `{text}` lists the value `{v}` twice");
        }
    }
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

/// A grid value as it reads in a point's name: the TOML value (`1e-3` → `0.001`, a string
/// without its quotes), with runs of characters unsafe in a file name made one `-`.
fn value_label(raw: &str) -> String {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    let text = match parsed {
        Some(toml::Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => raw.to_string(),
    };
    let label = safe_name(&text);
    let label: String = label.chars().take(MAX_VALUE_LABEL).collect();
    if label.is_empty() {
        "x".to_string()
    } else {
        label
    }
}

/// `text` with each run of characters other than letters, digits and `._+-` made one `-`.
fn safe_name(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "._+-".contains(c)))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Every combination of the axes' values (the last axis varies fastest), each with a unique,
/// filesystem-safe name; one point named `default` without axes.
fn grid_points(axes: &[Axis]) -> Vec<Point> {
    let mut points = vec![Point {
        name: String::new(),
        sets: vec![],
        values: vec![],
    }];
    for (i, axis) in axes.iter().enumerate() {
        let last = axis.key.rsplit('.').next().unwrap_or(&axis.key);
        // The key's last component, unless another axis ends the same way.
        let label = if axes
            .iter()
            .enumerate()
            .any(|(j, b)| j != i && b.key.rsplit('.').next() == Some(last))
        {
            safe_name(&axis.key)
        } else {
            safe_name(last)
        };
        let label = label.as_str();
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut p = p.clone();
                    if !p.name.is_empty() {
                        p.name.push('_');
                    }
                    let _ = write!(p.name, "{label}={}", value_label(v));
                    p.sets.push(format!("{}={v}", axis.key));
                    p.values.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    let mut seen = BTreeSet::new();
    for p in &mut points {
        if p.name.is_empty() {
            p.name = "default".to_string();
        }
        let base = p.name.clone();
        let mut k = 2;
        while !seen.insert(p.name.clone()) {
            p.name = format!("{base}-{k}");
            k += 1;
        }
    }
    points
}

/// The steps in a run directory's checkpoint; `None` without a readable checkpoint.
pub(super) fn saved_steps(run_dir: &Path) -> Option<u64> {
    let dir = checkpoint::latest(run_dir).ok()??;
    let text = fs::read_to_string(dir.join(COUNTERS_FILE)).ok()?;
    serde_json::from_str::<Counters>(&text)
        .ok()
        .map(|c| c.global_step)
}

/// `run.total_steps` of a run: its directory's config (which a user may have raised), else
/// the planned one.
pub(super) fn run_total_steps(run: &Run) -> u64 {
    fs::read_to_string(run.dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| TrainConfig::from_toml(&text, &[]).ok())
        .map_or(run.total_steps, |c| c.run.total_steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_take_ranges_lists_and_both() {
        assert_eq!(parse_seeds("1-5").unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(parse_seeds("1,3,7").unwrap(), [1, 3, 7]);
        assert_eq!(parse_seeds("1-3, 9").unwrap(), [1, 2, 3, 9]);
        assert_eq!(parse_seeds("0").unwrap(), [0]);
        for (bad, says) in [
            ("1-x", "`x` is not a seed"),
            ("5-1", "runs backwards"),
            ("1,,2", "empty entry"),
            ("1-3,2", "seed 2 twice"),
            ("-1", "`-1` is not a seed or a range"),
            ("0-100000", "more than"),
        ] {
            let e = parse_seeds(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn grid_values_split_at_top_level_commas() {
        let a = parse_grid("ppo.learning_rate=1e-3, 3e-4").unwrap();
        assert_eq!(a.key, "ppo.learning_rate");
        assert_eq!(a.values, ["1e-3", "3e-4"]);
        let a = parse_grid(r#"policy.encoder=[64,64],[32]"#).unwrap();
        assert_eq!(a.values, ["[64,64]", "[32]"]);
        let a = parse_grid(r#"env.id="a,b","c\"d""#).unwrap();
        assert_eq!(a.values, [r#""a,b""#, r#""c\"d""#]);
        for (bad, says) in [
            ("learning_rate=1", "not a SECTION.KEY"),
            ("ppo.learning_rate", "no `=`"),
            ("ppo.learning_rate=1,", "empty value"),
            ("ppo.learning_rate=1,1", "twice"),
        ] {
            let e = parse_grid(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn points_are_the_product_with_short_safe_names() {
        let axes = [
            parse_grid("ppo.learning_rate=1e-3,3e-4").unwrap(),
            parse_grid(r#"policy.encoder=[64, 64],[32]"#).unwrap(),
        ];
        let names: Vec<String> = grid_points(&axes).into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "learning_rate=0.001_encoder=64-64",
                "learning_rate=0.001_encoder=32",
                "learning_rate=0.0003_encoder=64-64",
                "learning_rate=0.0003_encoder=32",
            ]
        );
        assert_eq!(grid_points(&[])[0].name, "default");
        let same_last = [
            parse_grid("ppo.x=1").unwrap(),
            parse_grid(r#"run.x="a/b""#).unwrap(),
        ];
        assert_eq!(grid_points(&same_last)[0].name, "ppo.x=1_run.x=a-b");
        let collide = [parse_grid(r#"env.id="a/b","a b""#).unwrap()];
        let names: Vec<String> = grid_points(&collide).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["id=a-b", "id=a-b-2"]);
    }

    #[test]
    fn plan_differences_name_the_flag() {
        let a = json!({"version": 1, "config": {"path": null, "toml": "x"}, "sets": [], "grid": [{"key": "ppo.learning_rate", "values": ["1e-3"]}], "seeds": [1, 2], "plugins": [], "device": null});
        let mut b = a.clone();
        assert!(plan_differences(&a, &b).is_empty());
        b["seeds"] = json!([1, 2, 3]);
        b["grid"] = json!([{"key": "ppo.learning_rate", "values": ["1e-3", "3e-4"]}]);
        let d = plan_differences(&a, &b).join("; ");
        assert!(d.contains("--seeds was [1,2], now [1,2,3]"), "{d}");
        assert!(
            d.contains("--grid was ppo.learning_rate=1e-3, now ppo.learning_rate=1e-3,3e-4"),
            "{d}"
        );
    }
}
