// Package tune fits a health score's factor weights to renewal outcomes
// (pulse tune): which factors, some time before a renewal, told the
// accounts that churned or shrank from those that renewed.
//
// The data flow: the command replays the events and, for each renewal,
// reads the account's factor points at a horizon before it (a Sample);
// Fit learns one non-negative weight per factor by logistic regression on
// the older samples; AUC says how well the score ranks the newer ones
// under the file's weights, under equal weights and under the fitted
// ones; Rewrite puts the fitted weights into the rules file. Like package
// rules it does no I/O.
package tune
