# 7. stats: nondeterminism across runtime configurations (Std@Acc, Avg_Std@Output_Length, Div_Index,
#    Avg_Std@top1_prob, Pass@1 std), per (model, compression, task, precision, decoding) of an experiment.
