"""The thin Dagster layer: definitions built from the spec, one module per pattern.

Each pattern module exposes ``definitions(spec) -> dagster.Definitions``; this
package merges them and applies the policy every asset shares.  Assets only
call the core: no I/O is written inline here.
"""
