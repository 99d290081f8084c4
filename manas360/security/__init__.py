"""Security primitives: password hashing and access-token signing/verification."""
