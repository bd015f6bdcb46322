// Package config holds abacus's settings: their defaults, how they are read
// (a YAML file named by ABACUS_CONFIG, then ABACUS_<NAME> environment
// variables, then --<name> flags, each source overriding the one before) and
// how they are validated.
//
// Every setting is described once, in the settings table of settings.go; the
// environment, the flags and the YAML file are all read through that table,
// so a setting cannot exist in one source and be missing from another.
//
// Any librdkafka property passes through unchanged: ABACUS_KAFKA_SASL_PASSWORD
// becomes sasl.password, the YAML file takes a kafka: map and the command line
// a repeatable --kafka key=value flag. Values whose property name marks them
// as secret are masked by Masked and never logged.
package config
