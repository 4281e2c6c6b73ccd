//! Standard exports of opened results (FHIR R4, CSV, WFDB annotations).
