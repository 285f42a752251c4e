//! A hostile test plugin: Grows memory without end when provoked.

fn misbehave() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
    }
}

include!("../../hostile.rs");
