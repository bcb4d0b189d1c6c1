/* One function per command, each in its own cmd_*.c; main.c dispatches. */
#ifndef OTL_COMMANDS_H
#define OTL_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_fit_head(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);


#endif
