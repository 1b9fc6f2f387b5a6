/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who else holds an open file: a vfio cdev stays bound as long as any copy
 * of the file that was bound is open (copies made by dup(), fork() or
 * SCM_RIGHTS are the same open file). The daemon can find the copies held
 * by processes it can see in /proc (all of them, as root in the initial pid
 * namespace), comparing with kcmp(2); it cannot see a copy in flight in a
 * socket buffer, nor one held by a process in a pid namespace it cannot
 * see. */
#pragma once

#include <sys/types.h>

#define FILE_HOLDER_COMM_MAX 16

/* 1 and the pid and command name of a process other than this one holding
 * the same open file as fd; 0 if there is none; < 0 when it cannot tell:
 * then *ret_pid names the process it could not look into (-EACCES, -EPERM)
 * or is 0. */
int file_find_other_holder(int fd, pid_t *ret_pid, char ret_comm[static FILE_HOLDER_COMM_MAX]);
