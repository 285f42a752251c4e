//! Triggers (ChatBotKit's trigger API): management, events and what happens to them,
//! schedules, durability across a crash, the example trigger and the real SDK.

mod api;
mod chatbotkit_sdk;
mod durability;
mod events;
mod example;
mod schedules;
