//! The operator's integration tests, in one binary (one link): reconcile passes against
//! a scripted API server, the committed CRD files, the samples against the CRD's schema
//! and CEL rules, and the Helm chart check.

mod chart;
mod crd_files;
mod data_plane;
mod in_flight;
mod reconcile;
mod samples;
mod support;
