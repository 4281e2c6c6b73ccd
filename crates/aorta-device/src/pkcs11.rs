//! PKCS#11 placeholder
