//! The plugin side of the ABI: the vtable functions behind [`crate::export_plugin!`], each wrapped in `catch_unwind`.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::OnceLock;

use super::abi::{
    EnvHandle, PluginEnvInfo, PluginMetadata, PluginVtable, StepOut, ACTION_CONTINUOUS,
    ACTION_DISCRETE, ACTION_MULTI_DISCRETE, ENGRAM_ENV_ABI_VERSION, STATUS_ERROR, STATUS_OK,
    STATUS_PANIC,
};
use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::registry::Registry;
use crate::space::Action;

/// Export environments from a `cdylib` crate so that `engram ... --plugin PATH` can load them.
///
/// Takes a list of `(id, summary, kwargs, factory)` tuples with the arguments of
/// [`Registry::register`](crate::Registry::register) and emits the `engram_env_plugin` entry
/// (see [`crate::plugin::abi`]). Ids without a namespace are registered by the host under the
/// crate's name, `crate-name/Id-v0`. Every call is wrapped in `catch_unwind`: a panic in the
/// environment becomes an error in the host, never an abort.
///
/// In the plugin's `lib.rs` (the crate has `crate-type = ["cdylib"]`; see examples/env-plugin):
///
/// ```
/// use engram_envs::{Action, Env, EnvSpec, KwargSpec, Result, Space, Step};
///
/// /// Reward 1 for action 1, for `length` steps.
/// struct PressOne { spec: EnvSpec, length: i64, t: i64 }
///
/// impl Env for PressOne {
///     fn spec(&self) -> &EnvSpec { &self.spec }
///     fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
///         self.t = 0;
///         obs[0] = 0.0;
///         Ok(())
///     }
///     fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
///         self.t += 1;
///         obs[0] = self.t as f32;
///         let reward = if action == Action::Discrete(1) { 1.0 } else { 0.0 };
///         Ok(if self.t == self.length { Step::terminal(reward) } else { Step::running(reward) })
///     }
/// }
///
/// engram_envs::export_plugin![(
///     "PressOne-v0",
///     "press 1 for a reward",
///     vec![KwargSpec::int("length", 1, 100, 10, "steps per episode")],
///     |id, kw| Ok(PressOne {
///         spec: EnvSpec::new(id, Space::uniform_box(0.0, 100.0, vec![1]), Space::discrete(2)),
///         length: kw.int("length"),
///         t: 0,
///     }),
/// )];
///
/// // What Engram's loader calls first:
/// let vtable = unsafe { &*engram_env_plugin() };
/// assert_eq!(vtable.abi_version, engram_envs::ENGRAM_ENV_ABI_VERSION);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($(($id:expr, $summary:expr, $kwargs:expr, $factory:expr $(,)?)),+ $(,)?) => {
        /// The entry Engram looks up when it loads this library (`engram_envs::plugin::abi`).
        #[unsafe(no_mangle)]
        pub extern "C" fn engram_env_plugin() -> *const $crate::plugin::abi::PluginVtable {
            fn register(registry: &mut $crate::Registry) -> $crate::Result<()> {
                $( registry.register($id, $summary, $kwargs, $factory)?; )+
                Ok(())
            }
            $crate::plugin::export::entry(env!("CARGO_PKG_NAME"), register)
        }
    };
}

/// The plugin's environments and its metadata document, built on the first entry call.
struct Exported {
    registry: Registry,
    metadata: CString,
}

static EXPORTED: OnceLock<std::result::Result<Exported, String>> = OnceLock::new();

static VTABLE: PluginVtable = PluginVtable {
    abi_version: ENGRAM_ENV_ABI_VERSION,
    metadata: plugin_metadata,
    create: plugin_create,
    create_error: plugin_create_error,
    spec: plugin_spec,
    reset: plugin_reset,
    step: plugin_step,
    render_text: plugin_render_text,
    error: plugin_error,
    destroy: plugin_destroy,
};

thread_local! {
    static CREATE_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// One environment instance behind an [`EnvHandle`], with the strings it hands out.
struct Instance {
    env: Box<dyn Env>,
    spec_json: CString,
    error: CString,
    render: Option<CString>,
}

/// Build the plugin's registry with `register` (once) and return its vtable. Called by the
/// entry function [`crate::export_plugin!`] emits; not meant to be called directly.
#[doc(hidden)]
pub fn entry(name: &str, register: fn(&mut Registry) -> Result<()>) -> *const PluginVtable {
    EXPORTED.get_or_init(|| {
        catch_unwind(|| build(name, register))
            .unwrap_or_else(|payload| Err(panic_message(payload.as_ref())))
    });
    &VTABLE
}

fn build(
    name: &str,
    register: fn(&mut Registry) -> Result<()>,
) -> std::result::Result<Exported, String> {
    let mut registry = Registry::empty();
    register(&mut registry).map_err(|e| e.to_string())?;
    let metadata = PluginMetadata {
        name: name.into(),
        envs: registry
            .list()
            .into_iter()
            .map(|e| PluginEnvInfo {
                id: e.id.clone(),
                summary: e.summary.clone(),
                kwargs: e.kwargs.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_string(&metadata).map_err(|e| e.to_string())?;
    Ok(Exported {
        registry,
        metadata: c_string(json),
    })
}

/// A C string of `text`, with any interior NUL replaced.
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\u{fffd}");
        CString::new(text).unwrap_or_default()
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".into());
    format!("the environment panicked: {what}")
}

/// The message an error carries across the boundary (the host adds the env id itself).
fn error_message(e: &EnvError) -> String {
    match e {
        EnvError::Env { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn set_create_error(message: String) {
    CREATE_ERROR.with(|slot| *slot.borrow_mut() = Some(c_string(message)));
}

/// `&[T]` from a pointer and length that may be null and 0.
///
/// # Safety
/// Unless `len` is 0, `ptr` points to `len` initialised values valid for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller guarantees `len` values at `ptr`.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// `&mut [T]` from a pointer and length that may be null and 0.
///
/// # Safety
/// Unless `len` is 0, `ptr` points to `len` values writable and unaliased for `'a`.
unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 || ptr.is_null() {
        &mut []
    } else {
        // SAFETY: the caller guarantees `len` exclusive values at `ptr`.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

/// Run `f` on the instance behind `handle`, storing any error or panic message in it.
///
/// # Safety
/// `handle` is a live handle from [`plugin_create`], used by this thread alone.
unsafe fn with_instance(handle: EnvHandle, f: impl FnOnce(&mut Instance) -> Result<()>) -> i32 {
    if handle.is_null() {
        return STATUS_ERROR;
    }
    // SAFETY: live handles point to an `Instance` made by `plugin_create`.
    let instance = unsafe { &mut *handle.cast::<Instance>() };
    match catch_unwind(AssertUnwindSafe(|| f(instance))) {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(e)) => {
            instance.error = c_string(error_message(&e));
            STATUS_ERROR
        }
        Err(payload) => {
            instance.error = c_string(panic_message(payload.as_ref()));
            STATUS_PANIC
        }
    }
}

unsafe extern "C" fn plugin_metadata() -> *const c_char {
    match EXPORTED.get() {
        Some(Ok(exported)) => exported.metadata.as_ptr(),
        Some(Err(message)) => {
            set_create_error(format!("the plugin failed to initialise: {message}"));
            ptr::null()
        }
        None => {
            set_create_error("the plugin's entry function was not called".into());
            ptr::null()
        }
    }
}

unsafe extern "C" fn plugin_create(id: *const c_char, kwargs_json: *const c_char) -> EnvHandle {
    let made = catch_unwind(|| -> std::result::Result<Instance, String> {
        let Some(Ok(exported)) = EXPORTED.get() else {
            return Err("the plugin failed to initialise".into());
        };
        if id.is_null() || kwargs_json.is_null() {
            return Err("create got a null id or kwargs string".into());
        }
        // SAFETY: the host passes NUL-terminated strings valid for this call.
        let (id, kwargs) = unsafe { (CStr::from_ptr(id), CStr::from_ptr(kwargs_json)) };
        let id = id.to_str().map_err(|e| format!("id is not UTF-8: {e}"))?;
        let kwargs = kwargs
            .to_str()
            .map_err(|e| format!("kwargs are not UTF-8: {e}"))?;
        let kwargs: serde_json::Map<String, serde_json::Value> = serde_json::from_str(kwargs)
            .map_err(|e| format!("kwargs are not a JSON object: {e}"))?;
        let env = exported
            .registry
            .make(id, &kwargs)
            .map_err(|e| e.to_string())?;
        let spec_json = serde_json::to_string(env.spec()).map_err(|e| e.to_string())?;
        Ok(Instance {
            env,
            spec_json: c_string(spec_json),
            error: CString::default(),
            render: None,
        })
    });
    match made {
        Ok(Ok(instance)) => Box::into_raw(Box::new(instance)).cast(),
        Ok(Err(message)) => {
            set_create_error(message);
            ptr::null_mut()
        }
        Err(payload) => {
            set_create_error(panic_message(payload.as_ref()));
            ptr::null_mut()
        }
    }
}

unsafe extern "C" fn plugin_create_error() -> *const c_char {
    CREATE_ERROR.with(|slot| slot.borrow().as_ref().map_or(ptr::null(), |s| s.as_ptr()))
}

unsafe extern "C" fn plugin_spec(handle: EnvHandle) -> *const c_char {
    if handle.is_null() {
        return ptr::null();
    }
    // SAFETY: live handles point to an `Instance`.
    unsafe { (*handle.cast::<Instance>()).spec_json.as_ptr() }
}

unsafe extern "C" fn plugin_reset(
    handle: EnvHandle,
    has_seed: u8,
    seed: u64,
    obs: *mut f32,
    obs_len: usize,
) -> i32 {
    // SAFETY: the host passes a live handle and a writable buffer of `obs_len` floats.
    unsafe {
        with_instance(handle, |instance| {
            let obs = slice_mut(obs, obs_len);
            instance.env.reset((has_seed != 0).then_some(seed), obs)
        })
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn plugin_step(
    handle: EnvHandle,
    action_kind: u32,
    ints: *const i64,
    ints_len: usize,
    floats: *const f32,
    floats_len: usize,
    obs: *mut f32,
    obs_len: usize,
    out: *mut StepOut,
) -> i32 {
    // SAFETY: the host passes a live handle, readable action buffers, a writable observation
    // buffer and a writable `out`.
    unsafe {
        with_instance(handle, |instance| {
            let id = || instance.env.spec().id.clone();
            let ints = slice(ints, ints_len);
            let action = match action_kind {
                ACTION_DISCRETE => match ints {
                    [a] => Action::Discrete(*a),
                    _ => {
                        return Err(EnvError::Env {
                            id: id(),
                            message: format!("a discrete action needs 1 value, got {ints_len}"),
                        })
                    }
                },
                ACTION_MULTI_DISCRETE => Action::MultiDiscrete(ints),
                ACTION_CONTINUOUS => Action::Continuous(slice(floats, floats_len)),
                other => {
                    return Err(EnvError::Env {
                        id: id(),
                        message: format!("unknown action kind {other}"),
                    })
                }
            };
            if out.is_null() {
                return Err(EnvError::Env {
                    id: id(),
                    message: "step got a null `out` pointer".into(),
                });
            }
            let step = instance.env.step(action, slice_mut(obs, obs_len))?;
            *out = StepOut {
                reward: step.reward,
                terminated: step.terminated.into(),
                truncated: step.truncated.into(),
            };
            Ok(())
        })
    }
}

unsafe extern "C" fn plugin_render_text(handle: EnvHandle) -> *const c_char {
    let mut status_text = None;
    // SAFETY: the host passes a live handle.
    let status = unsafe {
        with_instance(handle, |instance| {
            instance.render = match instance.env.render() {
                Some(crate::env::Frame::Text(text)) => Some(c_string(text)),
                _ => None,
            };
            status_text = instance.render.as_ref().map(|s| s.as_ptr());
            Ok(())
        })
    };
    if status == STATUS_OK {
        status_text.unwrap_or(ptr::null())
    } else {
        ptr::null()
    }
}

unsafe extern "C" fn plugin_error(handle: EnvHandle) -> *const c_char {
    if handle.is_null() {
        return ptr::null();
    }
    // SAFETY: live handles point to an `Instance`.
    unsafe { (*handle.cast::<Instance>()).error.as_ptr() }
}

unsafe extern "C" fn plugin_destroy(handle: EnvHandle) {
    if handle.is_null() {
        return;
    }
    // SAFETY: `handle` came from `Box::into_raw` in `plugin_create` and is destroyed once.
    let instance = unsafe { Box::from_raw(handle.cast::<Instance>()) };
    // A panicking Drop must not unwind into the host either.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(instance)));
}
