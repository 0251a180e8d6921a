"""The seed's data workflow on the host: SiW videos -> aligned face crops -> PAD classifier -> ISO 30107-3 metrics."""
