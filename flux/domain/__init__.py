"""Flux's domain types, as Flux code imports them (`flux.domain.events`)."""
