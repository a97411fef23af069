//! A "plugin" from a future ABI: its vtable starts with version 999 (the only field every version shares).

/// The first field of every vtable version.
#[repr(C)]
pub struct FutureVtable {
    abi_version: u32,
}

static VTABLE: FutureVtable = FutureVtable { abi_version: 999 };

/// The entry Engram looks up.
#[unsafe(no_mangle)]
pub extern "C" fn engram_env_plugin() -> *const FutureVtable {
    &VTABLE
}
