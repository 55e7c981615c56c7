//! The step model: step ConfigMaps parsed and validated into typed steps.
