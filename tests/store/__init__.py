"""The real S3 adapter on moto: uploads, checksums, verification, manifests, listings, locks."""
