//! The benchmark's sluice plugin (configuration (b)): `handler` parses the webhook body
//! into typed structs and answers a small JSON summary, the same work the native server
//! and the `wasmtime serve` component do (bench/work). It calls nothing in the host, so
//! what the benchmark measures is the host's request path around it.
//!
//! With the `lean` feature it is built without Rust's standard library: its component
//! then imports nothing but the contract's types (a std build imports WASI's stdio,
//! environment and exit, which std's panic messages use, and every fresh instance pays
//! for linking them), and it allocates from a fixed arena inside its initial memory
//! (talc), so it never grows memory (each `memory.grow` costs the host two `mprotect`
//! calls, one to grow and one to reset the slot). The micro-benchmarks measure both
//! builds, to show how much of a call's cost is the plugin's build rather than the host.

#![cfg_attr(feature = "lean", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use sluice::integration::types::{
    Ack, ActionResult, Context, Conversation, Definition, Error, ErrorKind, HttpRequest, HttpResponse, Message, User,
};

struct Bench;

fn unsupported(what: &str) -> Error {
    Error {
        kind: ErrorKind::NotFound,
        message: format!("the bench plugin has no {what}"),
    }
}

impl Guest for Bench {
    fn definition() -> Definition {
        Definition {
            name: "bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Benchmark".into(),
            description: "Parses a chat platform's message.created webhook and answers a summary.".into(),
            configuration_schema: None,
            events: Vec::new(),
            actions: Vec::new(),
            channels: Vec::new(),
            states: Vec::new(),
            user_tags: Vec::new(),
        }
    }

    fn register(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(_ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let (status, body) = match bench_work::handle(&request.body) {
            Ok(summary) => (200, summary),
            Err(error) => (400, bench_work::refusal(&error)),
        };
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), bench_work::REPLY_CONTENT_TYPE.into())],
            body,
        })
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(unsupported(&format!("action {name}")))
    }

    fn handle_message(
        _ctx: Context,
        channel: String,
        _conversation: Conversation,
        _message: Message,
        _user: User,
    ) -> Result<Ack, Error> {
        Err(unsupported(&format!("channel {channel}")))
    }
}

export!(Bench);

/// The heap: 1 MiB inside the initial memory, so no call ever grows memory (an
/// allocation beyond it fails, and the call traps).
#[cfg(feature = "lean")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmArenaTalc = {
    use core::mem::MaybeUninit;
    static mut ARENA: [MaybeUninit<u8>; 1 << 20] = [MaybeUninit::uninit(); 1 << 20];
    // SAFETY: nothing but the allocator ever touches the arena.
    unsafe { talc::wasm::new_wasm_arena_allocator(&raw mut ARENA) }
};

#[cfg(feature = "lean")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator, through which the host copies arguments into the
/// plugin. A std build gets it from wasi-libc.
///
/// # Safety
/// Called by the host with the canonical ABI's arguments: `old` from an earlier call
/// with `old_len` and `align`, or `old_len` 0.
#[cfg(feature = "lean")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI passes a power-of-two alignment and sizes that fit.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable()
    }
    ptr
}
