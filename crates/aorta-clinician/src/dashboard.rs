//! The clinician's live web dashboard.
