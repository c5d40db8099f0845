// Package synth generates a realistic synthetic stream of Pulse events: B2B
// accounts of several archetypes (healthy, slowly declining, sudden drop,
// gone dark, expanding seats, integration that stops, ticket-heavy, gone
// silent), users with daily rhythms and quiet weekends, modules used with a
// skew, API calls, support tickets, NPS answers and account metadata.
//
// The stream is deterministic for a seed: Generator.Day produces one UTC
// day's events in time order, so a whole stream is written day by day with
// bounded memory. The archetype of account i is Archetype(i), so tests can
// check that the example rules catch each one.
package synth
