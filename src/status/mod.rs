//! The status ConfigMap: its pure state machine and the store that writes it.
