import FastAttention
print("attend")
