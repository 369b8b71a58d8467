"""Converters from each original release format to modalzoo folders (installed as
`modalzoo.conversion`). Each `conversion/<family>.py` separates the pure key mapping
(`convert_config`, `convert_state_dict`) from file I/O (`convert_checkpoint`)."""
