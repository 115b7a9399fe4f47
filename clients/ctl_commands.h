/* ctl_commands.h: every referralctl command, one function each; the table
 * that names them is in referralctl.c. */
#ifndef REFERRALCTL_COMMANDS_H
#define REFERRALCTL_COMMANDS_H

#include <unistd.h>

#include "referralctl.h"

int cmd_sessions(struct ctl *ctl, int argc, char **argv);
int cmd_publish(struct ctl *ctl, int argc, char **argv);
int cmd_capacity(struct ctl *ctl, int argc, char **argv);
int cmd_cancel_session(struct ctl *ctl, int argc, char **argv);
int cmd_book(struct ctl *ctl, int argc, char **argv);
int cmd_cancel(struct ctl *ctl, int argc, char **argv);
int cmd_overbook(struct ctl *ctl, int argc, char **argv);
int cmd_bookings(struct ctl *ctl, int argc, char **argv);

#endif
