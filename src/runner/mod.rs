//! The engine: exactly one runner that takes each step to a terminal result.
