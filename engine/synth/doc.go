// Package synth generates a realistic synthetic stream of Pulse events: B2B
// accounts of several archetypes (healthy, slowly declining, sudden drop,
// gone dark, expanding seats, integration that stops, ticket-heavy, gone
// silent), users with daily rhythms and quiet weekends, modules used with a
// skew, API calls, support tickets, NPS answers and account metadata.
//
// The stream is deterministic for a seed, and its memory is bounded
// whatever the number of accounts. Nothing is kept per account: an
// account's description is a pure function of (seed, period, index) and
// is generated again for each day (Generator.Account describes one for
// tests); tickets, the only thing that spans days, are derived from the
// days before. A day is generated account by account into chunks of
// Options.ChunkBytes, each sorted by time; a day larger than one chunk is
// spilled to temporary files as sorted runs and merged back (day.go), so
// Generator.OpenDay, Day and Live produce one UTC day's events in time
// order (ties in account order) with the same bytes whatever the chunk
// size. The archetype of account i is ArchetypeOf(seed, i), so tests can
// check that the example rules catch each one.
package synth
