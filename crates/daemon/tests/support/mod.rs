pub mod cli;
pub mod engine;
pub mod leaks;
pub mod registry;
pub mod terminal;
