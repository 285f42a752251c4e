//! A hostile test plugin: Traps (panics) when provoked.

fn misbehave() -> ! {
    panic!("the trap plugin was provoked")
}

include!("../../hostile.rs");
