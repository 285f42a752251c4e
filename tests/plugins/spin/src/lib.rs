//! A hostile test plugin: Loops forever when provoked.

fn misbehave() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

include!("../../hostile.rs");
