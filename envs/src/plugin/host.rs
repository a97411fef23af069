//! The host side of the ABI: load a plugin library, check its ABI version and register its environments.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::abi::{
    EntryFn, EnvHandle, PluginMetadata, PluginVtable, StepOut, ACTION_CONTINUOUS, ACTION_DISCRETE,
    ACTION_MULTI_DISCRETE, ENGRAM_ENV_ABI_VERSION, ENTRY_SYMBOL, STATUS_OK, STATUS_PANIC,
};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::{EnvError, Result};
use crate::kwargs::Kwargs;
use crate::registry::Registry;
use crate::space::Action;

/// A loaded plugin library: its vtable and metadata. The library itself is never unloaded.
#[derive(Debug)]
pub struct Plugin {
    /// The path it was loaded from (canonical).
    pub path: PathBuf,
    /// What the plugin declares.
    pub metadata: PluginMetadata,
    vtable: &'static PluginVtable,
}

impl Plugin {
    /// Open the library at `path`, check its ABI version and read its metadata. Each path is
    /// opened once per process; later calls return the same plugin.
    pub fn open(path: &Path) -> Result<Arc<Plugin>> {
        static OPENED: Mutex<BTreeMap<PathBuf, Arc<Plugin>>> = Mutex::new(BTreeMap::new());
        let path = path.canonicalize().map_err(|e| {
            plugin_error(
                path,
                format!(
                    "cannot open it ({e}); pass the path of the built library, e.g. \
                     target/debug/libNAME.so (NAME.dll on Windows, libNAME.dylib on macOS)"
                ),
            )
        })?;
        let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plugin) = opened.get(&path) {
            return Ok(plugin.clone());
        }
        let plugin = Arc::new(Plugin::load(&path)?);
        opened.insert(path, plugin.clone());
        Ok(plugin)
    }

    fn load(path: &Path) -> Result<Plugin> {
        // SAFETY: loading a library runs its initialisers; a plugin is trusted code the user
        // asked for by path.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
            plugin_error(
                path,
                format!(
                    "is not a loadable shared library ({e}); build the plugin crate with \
                     crate-type = [\"cdylib\"] and pass the library it produced"
                ),
            )
        })?;
        // The library stays loaded for the rest of the process: environments made from it
        // may live anywhere.
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the symbol, if present, has the `EntryFn` type by the ABI's definition.
        let entry = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
            plugin_error(
                path,
                format!(
                    "is a shared library but not an Engram env plugin: it exports no \
                     `{ENTRY_SYMBOL}` symbol; export its environments with \
                     `engram_envs::export_plugin!` in a cdylib crate"
                ),
            )
        })?;
        // SAFETY: the entry returns a pointer to a static vtable; only its first field, the
        // ABI version, is read before the version is checked.
        let vtable = unsafe { entry() };
        let Some(vtable) = NonNull::new(vtable.cast_mut()) else {
            return Err(plugin_error(
                path,
                format!("`{ENTRY_SYMBOL}` returned null"),
            ));
        };
        // SAFETY: every ABI version starts with `abi_version: u32`.
        let version = unsafe { vtable.cast::<u32>().read() };
        if version != ENGRAM_ENV_ABI_VERSION {
            return Err(plugin_error(
                path,
                format!(
                    "speaks env plugin ABI version {version}, but this Engram speaks version \
                     {ENGRAM_ENV_ABI_VERSION}; rebuild the plugin against the engram-envs of this \
                     Engram ({})",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        // SAFETY: the version matches, so the pointer is a static `PluginVtable`.
        let vtable: &'static PluginVtable = unsafe { vtable.cast::<PluginVtable>().as_ref() };
        // SAFETY: `metadata` returns a string valid for the library's lifetime, or null.
        let metadata = unsafe { borrowed_str((vtable.metadata)()) };
        let Some(metadata) = metadata else {
            // SAFETY: the global error string is valid until the next create on this thread.
            let why = unsafe { borrowed_str((vtable.create_error)()) };
            return Err(plugin_error(
                path,
                why.unwrap_or_else(|| "returned no metadata".into()),
            ));
        };
        let metadata: PluginMetadata = serde_json::from_str(&metadata)
            .map_err(|e| plugin_error(path, format!("returned malformed metadata ({e})")))?;
        Ok(Plugin {
            path: path.to_path_buf(),
            metadata,
            vtable,
        })
    }

    /// The id environment `local_id` of this plugin gets in a registry: itself when it has a
    /// namespace, else `plugin-name/local_id`.
    pub fn host_id(&self, local_id: &str) -> String {
        if local_id.contains('/') {
            local_id.to_string()
        } else {
            format!("{}/{local_id}", self.metadata.name)
        }
    }

    /// Register every environment of this plugin into `registry`; returns their ids.
    pub fn register_into(self: &Arc<Self>, registry: &mut Registry) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for info in &self.metadata.envs {
            let host_id = self.host_id(&info.id);
            let plugin = self.clone();
            let local_id = info.id.clone();
            registry
                .register(
                    &host_id,
                    &info.summary,
                    info.kwargs.clone(),
                    move |id, kw| plugin.create(&local_id, id, kw),
                )
                .map_err(|e| plugin_error(&self.path, e.to_string()))?;
            ids.push(host_id);
        }
        Ok(ids)
    }

    /// Make an instance of the plugin's `local_id`, named `host_id` on this side.
    fn create(
        self: &Arc<Self>,
        local_id: &str,
        host_id: &str,
        kwargs: &Kwargs,
    ) -> Result<PluginEnv> {
        let env_error = |message: String| EnvError::Env {
            id: host_id.into(),
            message,
        };
        let id = CString::new(local_id).map_err(|e| env_error(e.to_string()))?;
        let json = serde_json::to_string(kwargs.values()).map_err(|e| env_error(e.to_string()))?;
        let json = CString::new(json).map_err(|e| env_error(e.to_string()))?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let handle = unsafe { (self.vtable.create)(id.as_ptr(), json.as_ptr()) };
        let Some(handle) = NonNull::new(handle) else {
            // SAFETY: valid until the next create on this thread.
            let why = unsafe { borrowed_str((self.vtable.create_error)()) };
            return Err(env_error(
                why.unwrap_or_else(|| "the plugin could not create it".into()),
            ));
        };
        let mut env = PluginEnv {
            plugin: self.clone(),
            handle,
            spec: EnvSpec::new(
                host_id,
                crate::Space::discrete(1),
                crate::Space::discrete(1),
            ),
        };
        // SAFETY: the spec string lives as long as the handle.
        let spec = unsafe { borrowed_str((self.vtable.spec)(handle.as_ptr())) };
        env.spec = decode_spec(spec.as_deref().unwrap_or("null"))
            .map_err(|e| env_error(format!("the plugin returned a malformed spec ({e})")))?;
        env.spec.id = host_id.into();
        Ok(env)
    }
}

/// Load the plugin library at `path` and register its environments into the process-wide
/// registry (see [`crate::catalog`]), so that `make`, `VecEnv::make`, training and the CLI
/// find them; returns their ids. Loading the same path again returns the same ids.
pub fn load_plugin(path: &Path) -> Result<Vec<String>> {
    static REGISTERED: Mutex<BTreeMap<PathBuf, Vec<String>>> = Mutex::new(BTreeMap::new());
    let plugin = Plugin::open(path)?;
    let mut registered = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ids) = registered.get(&plugin.path) {
        return Ok(ids.clone());
    }
    let ids = crate::catalog::with_registry_mut(|registry| plugin.register_into(registry))?;
    registered.insert(plugin.path.clone(), ids.clone());
    Ok(ids)
}

/// Load every plugin in `paths` (see [`load_plugin`]); returns all their ids.
pub fn load_plugins<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for path in paths {
        ids.extend(load_plugin(path.as_ref())?);
    }
    Ok(ids)
}

fn plugin_error(path: &Path, message: String) -> EnvError {
    EnvError::Plugin {
        path: path.display().to_string(),
        message,
    }
}

/// Copy a plugin-owned C string, `None` when null.
///
/// # Safety
/// `ptr` is null or a NUL-terminated string valid for this call.
unsafe fn borrowed_str(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: see above.
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Parse a spec document, reading `null` Box bounds as infinite (serde_json writes
/// non-finite floats as `null`).
fn decode_spec(json: &str) -> serde_json::Result<EnvSpec> {
    let mut value: Value = serde_json::from_str(json)?;
    for key in ["observation_space", "action_space"] {
        let Some(space) = value.get_mut(key).and_then(Value::as_object_mut) else {
            continue;
        };
        for (bound, infinity) in [("low", f64::NEG_INFINITY), ("high", f64::INFINITY)] {
            if let Some(Value::Array(values)) = space.get_mut(bound) {
                for v in values.iter_mut().filter(|v| v.is_null()) {
                    // serde_json holds no infinities; f64::MAX rounds to ±inf as an f32.
                    *v = Value::from(infinity.signum() * f64::MAX);
                }
            }
        }
    }
    serde_json::from_value(value)
}

/// An environment instance living in a plugin, driven through its vtable.
struct PluginEnv {
    plugin: Arc<Plugin>,
    handle: NonNull<std::ffi::c_void>,
    spec: EnvSpec,
}

// SAFETY: the ABI lets a handle move between threads as long as one thread uses it at a
// time, which `&mut self` (and `PluginEnv` not being `Sync`) guarantees.
unsafe impl Send for PluginEnv {}

impl PluginEnv {
    fn raw(&self) -> EnvHandle {
        self.handle.as_ptr()
    }

    /// The error of a failed call, as an [`EnvError::Env`].
    fn failure(&self, status: i32) -> EnvError {
        // SAFETY: valid until the next call on the handle.
        let message = unsafe { borrowed_str((self.plugin.vtable.error)(self.raw())) }
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("the plugin failed with status {status}"));
        let message = if status == STATUS_PANIC && !message.contains("panicked") {
            format!("the environment panicked: {message}")
        } else {
            message
        };
        EnvError::Env {
            id: self.spec.id.clone(),
            message,
        }
    }
}

impl Env for PluginEnv {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        // SAFETY: `obs` is a writable buffer of `obs.len()` floats for the call.
        let status = unsafe {
            (self.plugin.vtable.reset)(
                self.raw(),
                seed.is_some().into(),
                seed.unwrap_or(0),
                obs.as_mut_ptr(),
                obs.len(),
            )
        };
        if status == STATUS_OK {
            Ok(())
        } else {
            Err(self.failure(status))
        }
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let single;
        let (kind, ints, floats): (u32, &[i64], &[f32]) = match action {
            Action::Discrete(a) => {
                single = [a];
                (ACTION_DISCRETE, &single, &[])
            }
            Action::MultiDiscrete(v) => (ACTION_MULTI_DISCRETE, v, &[]),
            Action::Continuous(v) => (ACTION_CONTINUOUS, &[], v),
        };
        let mut out = StepOut::default();
        // SAFETY: the action slices are readable and `obs` and `out` writable for the call.
        let status = unsafe {
            (self.plugin.vtable.step)(
                self.raw(),
                kind,
                ints.as_ptr(),
                ints.len(),
                floats.as_ptr(),
                floats.len(),
                obs.as_mut_ptr(),
                obs.len(),
                &mut out,
            )
        };
        if status != STATUS_OK {
            // A step that failed inside the plugin leaves the env in an unknown state: a crash,
            // which a VecEnv contains as it contains a built-in env's panic.
            return Err(match self.failure(status) {
                EnvError::Env { id, message } => EnvError::Crashed { id, message },
                other => other,
            });
        }
        Ok(Step {
            reward: out.reward,
            terminated: out.terminated != 0,
            truncated: out.truncated != 0,
        })
    }

    fn render(&self) -> Option<Frame> {
        // SAFETY: the string is valid until the next call on the handle; it is copied now.
        unsafe { borrowed_str((self.plugin.vtable.render_text)(self.raw())) }.map(Frame::Text)
    }
}

impl Drop for PluginEnv {
    fn drop(&mut self) {
        // SAFETY: the handle is live and destroyed exactly once, here.
        unsafe { (self.plugin.vtable.destroy)(self.raw()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Space;

    #[test]
    fn infinite_box_bounds_survive_the_spec_document() {
        let spec = EnvSpec::new(
            "X-v0",
            Space::bounded(vec![f32::NEG_INFINITY, -1.0], vec![f32::INFINITY, 1.0]),
            Space::discrete(2),
        )
        .with_time_limit(7);
        let json = serde_json::to_string(&spec).expect("json");
        assert_eq!(decode_spec(&json).expect("decodes"), spec);
    }

    #[test]
    fn missing_files_name_the_path_and_the_fix() {
        let err = load_plugin(Path::new("no/such/libplugin.so")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no/such/libplugin.so") && msg.contains("target/debug"),
            "{msg}"
        );
    }
}
