//! The RecAdam optimizer users hold; filled by the recadam-std issue.
