//! The threads delivery runs on, apart from the request path's.

/// The threads delivery runs on, apart from the request path's: the OS shares the CPU
/// between the two, so a flood of webhook requests cannot starve deliveries (their tasks
/// would otherwise queue behind every request in flight), and deliveries never delay a
/// request. Half the cores: more threads than that only hand work between threads (each
/// hand-off a wakeup), which cost a tenth of delivery's CPU on two cores.
pub(super) struct DeliveryRuntime(Option<tokio::runtime::Runtime>);

impl DeliveryRuntime {
    pub(super) fn start() -> anyhow::Result<DeliveryRuntime> {
        let threads = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-delivery")
            .enable_all()
            .build()?;
        Ok(DeliveryRuntime(Some(runtime)))
    }

    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the delivery runtime lives as long as Delivery")
            .handle()
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        // The last holder may be async code, or a task on this very runtime: shut it down
        // from a thread of its own, without waiting for what is still running.
        if let Some(runtime) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("sluice-delivery-stop".into())
                .spawn(move || runtime.shutdown_background());
        }
    }
}
