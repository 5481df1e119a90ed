"""The replay machinery: records, codec, journal and stores, executor. No printing, no CLI."""
