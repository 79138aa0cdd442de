//! Safe binding to Intel ipsec-mb (placeholder until the backend lands).
